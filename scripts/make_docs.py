"""Regenerate the parts of docs/ that are read from the code; runs no model.

    PYTHONPATH=src python scripts/make_docs.py           # rewrite the generated blocks
    PYTHONPATH=src python scripts/make_docs.py --check   # exit 1 if any block is out of date

A generated block sits between two marker comments in a page:

    <!-- generated:NAME -->
    ...written by this script...
    <!-- /generated -->

Blocks:
- ``params`` (docs/methods/METHOD.md): the method's parameter table, from its typed ``parameters``
  (``api.method_parameters``: name, what it accepts, default, the paper's value, description).
- ``measured`` (docs/methods/METHOD.md): what the recorded ``promptgym bench --preset full`` spent
  per run, from ``benchmarks/results/bench-full/results.json`` ("not recorded" when it is missing).
- ``methods`` (docs/index.md): the registered methods, each linked to its page.
- ``cli`` (docs/cli.md): the command reference, walked from ``promptgym.cli.main``'s click commands
  and options, so a command added later appears when this is run again.

Text outside the markers is never touched. A registered method without a page is an error: write
the page (copy another method's headings) and run this again.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BENCH = ROOT / "benchmarks" / "results" / "bench-full" / "results.json"
if str(ROOT / "src") not in sys.path:  # the checkout's own package, also without PYTHONPATH=src
    sys.path.insert(0, str(ROOT / "src"))
BLOCK = re.compile(r"(<!-- generated:([\w-]+) -->\n)(.*?)(<!-- /generated -->)", re.S)


def _cell(text: Any) -> str:
    """Text for a markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


# -- method pages ------------------------------------------------------------------------------------

def params_block(method: str) -> str:
    from promptgym import api

    rows = ["| parameter | accepts | default | paper | what it does |", "|---|---|---|---|---|"]
    for p in api.method_parameters(method):
        rows.append(f"| `{p['name']}` | {_cell(p['accepts'])} | `{_cell(p['default'])}` | "
                    f"{'-' if p['paper'] == '-' else '`' + _cell(p['paper']) + '`'} | {_cell(p['help'])} |")
    return ("Generated from the method's `parameters` (`promptgym methods " + method + "` prints the same). "
            "Paper: the paper's or its official code's value; `-` where neither gives one (a promptgym "
            "choice). Set one with `--param KEY=VALUE` or `params={...}`.\n\n" + "\n".join(rows) + "\n")


def measured_block(method: str, path: Path = BENCH) -> str:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return "Not recorded yet (`benchmarks/results/bench-full/results.json` is missing).\n"
    rows = [m for m in data["methods"] if m["method"] == method]
    if not rows:
        return "This method is not in the recorded bench (`benchmarks/results/bench-full/`).\n"
    s = data["meta"]["settings"]
    out = [f"From `benchmarks/results/bench-full/results.md` ({data['meta']['date'][:10]}, 2 cores): budget "
           f"{s['budget']} calls per run, train {s['train_size']}, dev {s['dev_size']}, test {s['test_size']}, "
           f"final selection k {s['select_k']}, optimizer model `{s['optimizer_model']}`, means over "
           f"{len(data['meta']['seeds'])} seeds. Charged: calls counted against the budget (search and final "
           "selection). All calls: also the held-out evaluation after the search (the start and the returned "
           "prompt on train and test, and a method's own held-out report such as DP2O's), which is not "
           "charged.", "",
           "| dataset | task model | variant | charged calls | all calls | wall s |", "|---|---|---|---|---|---|"]
    for m in rows:
        out.append(f"| `{m['dataset']}` | `{m['task_model']}` | `{_cell(m['variant'])}` | "
                   f"{m['budget_used_mean']:.0f} | {m['calls_mean']:.0f} | {m['wall_seconds_mean']:.0f} |")
    return "\n".join(out) + "\n"


# -- index -------------------------------------------------------------------------------------------

def methods_block() -> str:
    """The built-in methods (an installed package's method documents itself)."""
    from promptgym.optimizers import BUILTIN_METHODS, get_method

    return "\n".join(f"- [`{name}`](methods/{name}.md): {get_method(name).summary}"
                     for name in sorted(BUILTIN_METHODS)) + "\n"


# -- CLI reference ------------------------------------------------------------------------------------

def _option_row(param: Any, ctx: Any) -> str:
    import click

    names = ", ".join(f"`{n}`" for n in [*param.opts, *param.secondary_opts])
    if getattr(param, "is_flag", False):
        takes = "flag"
    else:
        takes = _cell(param.make_metavar(ctx))
    default = param.get_default(ctx, call=False)
    unset = default is None or type(default).__name__ == "Sentinel"  # click 8.2+: UNSET, not None
    if getattr(param, "is_flag", False) or unset or callable(default) or param.multiple and not default:
        shown = ""
    else:
        shown = f"`{_cell(default)}`"
    extra = " (repeatable)" if param.multiple else ""
    required = " Required." if param.required else ""
    help_text = _cell(inspect.cleandoc(param.help or "")) if param.help else ""
    if isinstance(param.type, click.Choice) and "one of" not in help_text.lower():
        help_text = (help_text + " " if help_text else "") + "One of: " + ", ".join(map(str, param.type.choices)) + "."
    return f"| {names}{extra} | {takes} | {shown} | {help_text}{required} |"


def _command_section(name: str, command: Any, parent: Any) -> list[str]:
    import click

    ctx = click.Context(command, info_name=name, parent=parent)
    usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
    out = [f"### promptgym {name}", "", inspect.cleandoc(command.help or ""), "", "```", usage, "```", ""]
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    for arg in arguments:
        out.append(f"Argument `{arg.human_readable_name}`{'' if arg.required else ' (optional)'}.")
    if arguments:
        out.append("")
    options = [p for p in command.params if isinstance(p, click.Option)]
    if options:
        out += ["| option | value | default | what it does |", "|---|---|---|---|"]
        out += [_option_row(p, ctx) for p in options]
        out.append("")
    return out


def cli_block() -> str:
    import click

    from promptgym.cli import main

    root = click.Context(main, info_name="promptgym")
    out = ["Generated from the click commands in `src/promptgym/cli.py`. Every command also takes `--help`.", "",
           "Options of `promptgym` itself, given before the command:", "",
           "| option | value | default | what it does |", "|---|---|---|---|"]
    out += [_option_row(p, root) for p in main.params if isinstance(p, click.Option)]
    out.append("")
    for name in sorted(main.commands):
        out += _command_section(name, main.commands[name], root)
    return "\n".join(out).rstrip("\n") + "\n"


# -- the pages ------------------------------------------------------------------------------------------

def producers(page: Path) -> dict[str, Callable[[], str]]:
    """Block name -> what writes it, for one page."""
    rel = page.relative_to(DOCS).as_posix()
    if rel.startswith("methods/"):
        method = page.stem
        return {"params": lambda: params_block(method), "measured": lambda: measured_block(method)}
    if rel == "index.md":
        return {"methods": methods_block}
    if rel == "cli.md":
        return {"cli": cli_block}
    return {}


def render(page: Path, text: str) -> str:
    """``text`` with every generated block of ``page`` rewritten; unknown block names are an error."""
    known = producers(page)

    def replace(match: re.Match) -> str:
        name = match.group(2)
        if name not in known:
            raise SystemExit(f"{page}: unknown generated block '{name}' (known here: {', '.join(known) or 'none'})")
        return match.group(1) + known[name]() + match.group(4)

    return BLOCK.sub(replace, text)


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def missing_method_pages() -> list[str]:
    from promptgym.optimizers import BUILTIN_METHODS

    return [name for name in sorted(BUILTIN_METHODS) if not (DOCS / "methods" / f"{name}.md").exists()]


def render_all() -> dict[Path, tuple[str, str]]:
    """Every page with generated blocks: path -> (current text, regenerated text)."""
    out = {}
    for page in pages():
        text = page.read_text()
        if BLOCK.search(text):
            out[page] = (text, render(page, text))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is out of date")
    args = parser.parse_args(argv)
    missing = missing_method_pages()
    if missing:
        print(f"no page for method(s) {', '.join(missing)}: write docs/methods/NAME.md", file=sys.stderr)
        return 1
    stale = []
    for page, (old, new) in render_all().items():
        if old != new:
            stale.append(page.relative_to(ROOT).as_posix())
            if not args.check:
                page.write_text(new)
    verb = "out of date" if args.check else "rewritten"
    print(f"{verb}: {', '.join(stale)}" if stale else "docs: generated blocks up to date")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
