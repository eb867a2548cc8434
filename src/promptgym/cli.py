"""Command line: thin. Parses arguments, calls the Python API, prints. Errors are one line."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from promptgym.errors import PromptgymError
from promptgym.evaluation.selection import DEFAULT_DEV, DEFAULT_K, DEFAULT_LEVEL, DEFAULT_MARGIN, DEFAULT_STATISTIC, STATISTICS
from promptgym.secrets import scrub

if TYPE_CHECKING:
    from promptgym.api import RunSummary


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"promptgym: error: {scrub(message)}", err=True)  # no key seen in this process is ever printed
    sys.exit(code)


def _stop_options(command: Any) -> Any:
    """The stoppers every method takes (``promptgym.optimizers.stopping``); off unless given."""
    options = [
        click.option("--max-steps", type=click.IntRange(min=1), help="Stop after N steps of the method."),
        click.option("--patience", type=click.IntRange(min=1),
                     help="Stop after N steps in a row without a new best score."),
        click.option("--target", type=float, help="Stop once the best score reaches this value."),
        click.option("--max-seconds", type=click.FloatRange(min=0),
                     help="Stop after this many seconds (reads the clock: a resumed run goes to a different place)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _parse_params(items: tuple[str, ...]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PromptgymError(f"--param '{item}': expected KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _input_template(value: str | None) -> str | None:
    """``--input-template``: the text, where ``\\n`` is a line break, or ``@FILE``: the file's text
    as it is (less one final line break)."""
    if value is None or not value.startswith("@"):
        return None if value is None else value.replace("\\n", "\n")
    path = value[1:]
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise PromptgymError(f"--input-template {value}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise PromptgymError(f"--input-template {value}: not UTF-8 text") from None
    return text[:-1] if text.endswith("\n") else text


def _predict_inputs(inputs: tuple[str, ...], fields: tuple[str, ...],
                    input_json: tuple[str, ...]) -> list[Any]:
    """``predict``'s inputs: texts (``--input``), or fields for a run with an input template: one
    input from the ``--field NAME=VALUE`` items, or one per ``--input-json`` object."""
    given = [flag for flag, items in (("--input", inputs), ("--field", fields), ("--input-json", input_json)) if items]
    if len(given) != 1:
        raise PromptgymError("give the inputs one way: --input TEXT (repeatable), or for a run with an input "
                             "template --field NAME=VALUE (one input) or --input-json '{\"NAME\": ...}' (repeatable)"
                             + (f"; got {' and '.join(given)}" if given else ""))
    if inputs:
        return list(inputs)
    if fields:
        one: dict[str, str] = {}
        for item in fields:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise PromptgymError(f"--field '{item}': expected NAME=VALUE")
            if key in one:
                raise PromptgymError(f"--field {key}: given twice")
            one[key] = value
        return [one]
    rows = []
    for item in input_json:
        try:
            row = json.loads(item)
        except json.JSONDecodeError as exc:
            raise PromptgymError(f"--input-json {item[:60]!r}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise PromptgymError(f"--input-json {item[:60]!r}: expected a JSON object of fields, got {type(row).__name__}")
        rows.append(row)
    return rows


def _method_spec(method: str) -> tuple[str, dict[str, Any]]:
    """``--method ape[candidate_eval=halving]``: the method and the parameters in brackets (as the
    bench's ``--methods`` items; ``--param`` overrides them)."""
    if "[" not in method:
        return method, {}
    from promptgym.bench.grid import parse_method

    return parse_method(method, "--method")


def _print_summary(summary: RunSummary, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.to_dict(full=False)))
        return
    from promptgym.report import summary_table

    summary_table(summary)


class _ConfigCommand(click.Command):
    """A command that also takes its options from a TOML file (``--config FILE``); what the command
    line gives wins. ``list_options``: comma-separated options a TOML array may give too."""

    def __init__(self, *args: Any, list_options: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        table = "; [params] for --param" if any(p.name == "params" for p in self.params) else ""
        self.params.append(click.Option(["--config", "config_file"], metavar="FILE", default=None,
                                        help=f"Options from a TOML file (keys: the long option names{table}); "
                                             "flags given here override it."))
        self.list_options = list_options

    def invoke(self, ctx: click.Context) -> Any:
        from promptgym.config import merge_into

        path = ctx.params.pop("config_file", None)
        if path is not None:
            merge_into(ctx, path, self, self.list_options)
        return super().invoke(ctx)


class _Group(click.Group):
    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Usage errors as one line too (click's default is a multi-line usage block)."""
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.UsageError as exc:
            hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
            _fail(exc.format_message().replace("\n", " ") + hint)
        except click.ClickException as exc:
            _fail(exc.format_message())
        except click.Abort:
            _fail("aborted", 130)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return super().invoke(ctx)
        except PromptgymError as exc:
            _fail(str(exc))
        except SQLAlchemyError as exc:  # the store or cache failed after opening (server gone, disk full)
            from promptgym.store.db import reason

            _fail(f"database error: {reason(exc)}")
        except KeyboardInterrupt as exc:
            run_id = getattr(exc, "run_id", None)
            _fail(f"interrupted; continue with: promptgym resume {run_id}" if run_id else
                  "interrupted before a run was stored; nothing to resume", 130)


@click.group(cls=_Group)
@click.option("--store", "store_url", default=None, help="Run store URL: sqlite:///PATH or postgresql://USER@HOST/DB (default: SQLite under PROMPTGYM_HOME).")
@click.pass_context
def main(ctx: click.Context, store_url: str | None) -> None:
    """promptgym: automatic prompt optimization with honest held-out numbers."""
    ctx.obj = {"store": store_url}


@main.command()
@click.argument("name", required=False)
@click.option("--params", "params_of", metavar="NAME", default=None,
              help="List method NAME's parameters (same as: promptgym methods NAME).")
def methods(name: str | None, params_of: str | None) -> None:
    """List the available methods, one per line, name first; with NAME, that method's parameters
    (what each accepts, its default, the paper's value, what it does)."""
    from promptgym import api

    method = params_of or name
    if method is None:
        for key, summary in api.methods().items():
            click.echo(f"{key}\t{summary}")
        return
    rows = [dict(name="parameter", accepts="accepts", default="default", paper="paper", help="description")]
    rows += api.method_parameters(method)
    widths = {k: max(len(r[k]) for r in rows) for k in ("name", "accepts", "default", "paper")}
    click.echo(f"{method}: {api.methods()[method]}")
    for r in rows:
        click.echo("  ".join(r[k].ljust(w) for k, w in widths.items()) + "  " + r["help"])


@main.command(cls=_ConfigCommand)
@click.option("--dataset", default=None,
              help="PATH (.jsonl/.csv), bigbench:TASK[/SUBTASK], example:NAME, paper:PAPER/TASK or "
                   "hf:NAME[/CONFIG][@SPLIT] (a Hugging Face dataset: ORG/NAME on the Hub or a local directory; "
                   "needs promptgym[hf]) (with --train: only the task's own instruction and label set).")
@click.option("--train", "train_file", default=None, metavar="FILE",
              help="Exact train split: the rows of a .jsonl/.csv file, in order (no sampling; --dataset optional).")
@click.option("--dev", "dev_file", default=None, metavar="FILE",
              help="Exact dev split for final selection, with --train (without it: selection off).")
@click.option("--test", "test_file", default=None, metavar="FILE",
              help="Exact held-out test split, with --train (without it: no held-out report).")
@click.option("--input-field", default=None, help="JSONL/CSV field with the input (default: input, question, text...).")
@click.option("--target-field", default=None, help="Field with the expected answer (default: target, output, answer, label).")
@click.option("--choices-field", default=None, help="Field with the options, a list or 'a|b|c' (default: choices, options).")
@click.option("--input-template", default=None, metavar="TEMPLATE|@FILE",
              help="Render the input from several fields: a Jinja2 template naming them, e.g. "
                   "'Question: {{ question }}\\nContext: {{ context }}' (\\n: a line break), or @FILE. Stored with "
                   "the run (resume, predict and export render the same); the search never changes it.")
@click.option("--method", default="ape", show_default=True,
              help="A method (promptgym methods), its parameters in brackets if you like: ape[candidate_eval=halving].")
@click.option("--budget", default=300, show_default=True, type=click.IntRange(min=1),
              help="Hard cap on the model calls of the search and final selection (the held-out test and the "
                   "summary's training scores are not charged: see README, Budget).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seeds the splits and the method (a whole number from 0).")
@click.option("--prompt", default=None, help="Starting instruction (default: the dataset's own).")
@click.option("--train-size", default=None, type=click.IntRange(min=1), help="[default: 30; with --train: its rows]")
@click.option("--dev-size", default=None, type=click.IntRange(min=0),
              help=f"Examples for final selection (default: up to {DEFAULT_DEV}, as the data and half the budget allow; "
                   "0: off).")
@click.option("--select-k", default=DEFAULT_K, show_default=True, type=click.IntRange(min=0),
              help="The method's top candidates that race your prompt on dev (0: no final selection).")
@click.option("--select-level", default=DEFAULT_LEVEL, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="A winner replaces your prompt only if a paired test on dev gives p below this.")
@click.option("--select-statistic", type=click.Choice(STATISTICS), default=DEFAULT_STATISTIC, show_default=True,
              help="What final selection tests on dev: the task's score (accuracy), or for choices scored by "
                   "log-probability the right option's probability or its margin over the best wrong one.")
@click.option("--select-margin", type=click.FloatRange(0, 1), default=DEFAULT_MARGIN, show_default=True,
              help="With --select-statistic probability or margin: how much dev accuracy the winner may lose "
                   "against your prompt.")
@click.option("--select-sequential", is_flag=True,
              help="Race on dev examples drawn while undecided (from those in neither train nor test), "
                   "stopping as soon as an anytime-valid test decides, within the same reserve.")
@click.option("--test-size", default=None, type=click.IntRange(min=0), help="[default: 100; with --train: --test's rows]")
@click.option("--task-model", default="embedded", show_default=True,
              help="embedded | gemma3-270m | gguf:PATH | openai:MODEL[@BASE_URL] | openai:MODEL@URL#N,URL#N (a pool)")
@click.option("--optimizer-model", default="embedded", show_default=True)
@click.option("--layout", default="chat", show_default=True, help="Prompt layout (chat, chat-options, chat-system, plain).")
@click.option("--normalize", type=click.Choice(["mean", "none"]), default="none", show_default=True,
              help="Length normalisation of option log-probabilities.")
@click.option("--scoring", type=click.Choice(["logprob", "generate"]), default=None,
              help="How choice tasks are scored (default: logprob where the model allows; a served model is "
                   "asked with the first training example whether its first answer token's log-probabilities "
                   "tell the options apart, else generate).")
@click.option("--calibrate", is_flag=True,
              help="Calibrate choice scores (contextual calibration): divide each option's probability by the "
                   "prompt's prior for it, read from content-free inputs (N/A, '', [MASK]; 3 calls per prompt).")
@click.option("--reasoning", type=click.Choice(["off", "on", "search"]), default="off", show_default=True,
              help="Choice tasks: answer directly (off); reason first, then end with 'Answer: <option>', parsed to "
                   "an option (on: the start and every candidate); or race each mode on dev in final selection "
                   "(search: the reasoning twins of the method's best and of your prompt).")
@click.option("--reasoning-tokens", type=click.IntRange(min=1), default=None,
              help="With --reasoning on or search: the most tokens a reasoning reply may take (default 256).")
@click.option("--param", "params", multiple=True, help="Method parameter KEY=VALUE (repeatable).")
@click.option("--reward", default=None, metavar="SPEC",
              help="How answers are scored: exact-match, accuracy, code-tests, code-tests-all, contains, token-f1, "
                   "rouge-l, numeric, json-schema:SCHEMA.json, judge:RUBRIC.md (a judge model scores each answer "
                   "against your rubric), MODULE:FUNCTION or FILE.py:FUNCTION with "
                   "FUNCTION(prediction, example) -> float (default: the dataset's own, else accuracy / exact match).")
@click.option("--judge-model", default=None, metavar="SPEC",
              help="The judge of --reward judge:RUBRIC.md, any model spec as --task-model (default: the optimizer model).")
@click.option("--judge-max-words", type=click.IntRange(min=1), default=None, metavar="WORDS",
              help="Answers longer than this are cut before judging and scored down in proportion "
                   "(default: twice the longest reference).")
@click.option("--judge-order", type=click.Choice(["balanced", "both"]), default=None,
              help="Where the judge sees the reference and the answer: balanced (one call per answer, half of the "
                   "examples each way; the default) or both (two calls per answer, averaged).")
@click.option("--judge-scoring", type=click.Choice(["logprob", "generate"]), default=None,
              help="How the judge's score is read: the expected score under its probabilities of the digits 1-5 "
                   "(logprob; the default where the judge model gives them) or a greedy reply read tolerantly "
                   "(generate; an unreadable reply scores 0 and is counted).")
@click.option("--judge-check", default=None, metavar="METRIC|none",
              help="With a judge reward: the metric that scores the start's and the returned prompt's test answers "
                   "against the references, a check the judge cannot sway; a clearly lower score is reported "
                   "(default rouge-l, token-f1 without the metrics extra; any free-text reward spec; none: off).")
@click.option("--length-penalty", type=click.IntRange(min=1), default=None, metavar="WORDS",
              help="Take up to --length-weight off a score as the answer grows from WORDS to 2 x WORDS words.")
@click.option("--length-weight", type=click.FloatRange(min=0), default=None,
              help="The most the length penalty takes off (default 0.5).")
@click.option("--long-inputs", type=click.Choice(["error", "truncate"]), default="error", show_default=True,
              help="An input too long for the task model's context: stop before the search, naming the row, "
                   "or cut the input to fit.")
@click.option("--cache-url", default=None, metavar="URL",
              help="Response cache: sqlite:///PATH or postgresql://USER@HOST/DB (default: PROMPTGYM_CACHE, else "
                   "SQLite under PROMPTGYM_HOME).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON line.")
@click.option("--quiet", is_flag=True, help="No projection or progress output.")
@click.option("--dry-run", is_flag=True,
              help="Print the projected model calls, tokens and time, then exit: no model call, no run stored.")
@_stop_options
@click.pass_context
def optimize(ctx: click.Context, dataset: str | None, train_file: str | None, dev_file: str | None,
             test_file: str | None, input_field: str | None, target_field: str | None,
             choices_field: str | None, input_template: str | None, method: str, budget: int, seed: int, prompt: str | None,
             train_size: int | None, dev_size: int | None, select_k: int, select_level: float,
             select_statistic: str, select_margin: float, select_sequential: bool, test_size: int | None,
             task_model: str, optimizer_model: str,
             layout: str, normalize: str, scoring: str | None, calibrate: bool, reasoning: str,
             reasoning_tokens: int | None, params: tuple[str, ...],
             reward: str | None, judge_model: str | None, judge_max_words: int | None, judge_order: str | None,
             judge_scoring: str | None, judge_check: str | None,
             length_penalty: int | None, length_weight: float | None,
             long_inputs: str, cache_url: str | None, as_json: bool, quiet: bool, dry_run: bool,
             **stop: Any) -> None:
    """Search for a better prompt and report it against the starting one on held-out data."""
    from promptgym import api

    if length_weight is not None and length_penalty is None:
        raise PromptgymError("--length-weight needs --length-penalty WORDS")
    method, in_brackets = _method_spec(method)
    result = api.optimize(dataset=dataset, method=method, budget=budget, seed=seed, prompt=prompt,
                          train_size=train_size, dev_size=dev_size, test_size=test_size,
                          train_file=train_file, dev_file=dev_file, test_file=test_file,
                          select_k=select_k, select_level=select_level, select_statistic=select_statistic,
                          select_margin=select_margin, select_sequential=select_sequential,
                          task_model=task_model, optimizer_model=optimizer_model, layout=layout,
                          normalize=normalize, scoring=scoring, params={**in_brackets, **_parse_params(params)},
                          reward=reward, judge_model=judge_model, judge_max_words=judge_max_words,
                          judge_order=judge_order, judge_scoring=judge_scoring, judge_check=judge_check,
                          length_penalty=None if length_penalty is None else (
                              length_penalty, 0.5 if length_weight is None else length_weight),
                          store_url=ctx.obj["store"], cache_url=cache_url, quiet=quiet, long_inputs=long_inputs,
                          fields={k: v for k, v in (("input", input_field), ("target", target_field),
                                                    ("choices", choices_field)) if v}, stop=stop,
                          dry_run=dry_run, input_template=_input_template(input_template), calibrate=calibrate,
                          reasoning=reasoning, reasoning_tokens=reasoning_tokens)
    if dry_run:
        click.echo(json.dumps(result.to_dict()) if as_json else "\n".join(result.lines()))
        return
    _print_summary(result.summary, as_json)


@main.command(cls=_ConfigCommand, list_options=("methods", "datasets", "seeds", "task_model"))
@click.option("--preset", type=click.Choice(["quick", "full"]), default="full", show_default=True,
              help="Defaults for everything below: quick (one dataset, one seed, small splits; a first look) "
                   "or full (two tasks, 3 seeds, budget 300). Both select as optimize does by default: one finalist, "
                   "the dev split the budget pays for. Any option given overrides its preset value.")
@click.option("--methods", default=None, help="all, or METHOD[KEY=VALUE,...] items separated by commas.")
@click.option("--datasets", default=None, help="Datasets separated by commas (as --dataset of optimize).")
@click.option("--seeds", default=None, help="Seeds separated by commas, e.g. 0,1,2.")
@click.option("--budget", type=click.IntRange(min=1), default=None, help="Model calls per run (search and selection).")
@click.option("--train-size", type=click.IntRange(min=1), default=None)
@click.option("--dev-size", type=click.IntRange(min=0), default=None)
@click.option("--test-size", type=click.IntRange(min=0), default=None)
@click.option("--select-k", type=click.IntRange(min=0), default=None)
@click.option("--select-level", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=DEFAULT_LEVEL,
              show_default=True)
@click.option("--select-sequential", is_flag=True, help="Sequential final selection in every run (as optimize's).")
@click.option("--select-statistic", type=click.Choice(STATISTICS), default=DEFAULT_STATISTIC, show_default=True,
              help="What final selection tests on dev in every run (as optimize's).")
@click.option("--select-margin", type=click.FloatRange(0, 1), default=DEFAULT_MARGIN, show_default=True,
              help="With --select-statistic probability or margin: the dev accuracy a winner may lose (as optimize's).")
@click.option("--task-model", default="embedded", show_default=True,
              help="Task model(s) separated by commas: each is a column of the grid (a pool's URLs stay one model).")
@click.option("--optimizer-model", default="embedded", show_default=True)
@click.option("--layout", default="chat", show_default=True, help="Prompt layout of the task model (plain for base models).")
@click.option("--train", "train_file", default=None, help="Exact training split (JSONL/CSV), with --dev and --test.")
@click.option("--dev", "dev_file", default=None, help="Exact dev split for final selection.")
@click.option("--test", "test_file", default=None, help="Exact test split.")
@click.option("--out", "out_dir", default="promptgym-bench", show_default=True,
              help="Bench directory: results.json, results.md, plots/, and work/ (run store, one cache per run).")
@click.option("--retry-failed", is_flag=True, help="Run cells that failed before again (finished ones never are).")
@click.option("--executor", type=click.Choice(["in-process", "ray"]), default="in-process", show_default=True,
              help="Who runs the cells: this process, one after another, or a Ray cluster (pip install "
                   "'promptgym[ray]'), one task per cell.")
@click.option("--address", default=None, metavar="auto|HOST:PORT|ray://HOST:PORT",
              help="The Ray cluster (with --executor ray); default RAY_ADDRESS, or a cluster of this machine "
                   "started for the bench.")
@click.option("--json", "as_json", is_flag=True, help="Print the per-method records as one JSON line.")
def bench(preset: str, methods: str | None, datasets: str | None, seeds: str | None, budget: int | None,
          train_size: int | None, dev_size: int | None, test_size: int | None, select_k: int | None,
          select_level: float, select_sequential: bool, select_statistic: str, select_margin: float, task_model: str,
          optimizer_model: str, layout: str, train_file: str | None,
          dev_file: str | None, test_file: str | None, out_dir: str, retry_failed: bool, executor: str,
          address: str | None, as_json: bool) -> None:
    """Run every method on the same datasets, seeds, split and budget; write a table, paired tests and
    plots. Resumable: a finished run is never repeated, so running it again only rewrites the report."""
    from pathlib import Path

    from promptgym.bench import bench as run_bench
    from promptgym.bench.grid import split_list, split_models

    items = split_list(seeds) if seeds else []
    if not all(s.isascii() and s.isdigit() for s in items):  # "-1" too: a seed is a whole number from 0
        raise PromptgymError(f"--seeds '{seeds}': expected whole numbers from 0 separated by commas")
    seed_list = [int(s) for s in items] or None

    def progress(row: dict[str, Any], ran: bool, number: int, total: int) -> None:
        head = f"[{number}/{total}] {row['dataset']} {row['task_model']} {row['variant']} seed {row['seed']}:"
        if row["status"] != "ok":
            tail = f"failed: {row['error']}"
        else:
            s = row["summary"]
            kept = " (kept start)" if s.get("kept_start") else ""
            tail = (f"test {s['test_initial']:.3f} -> {s['test_best']:.3f}{kept}, {s['llm_calls']} calls, "
                    f"{row['wall_seconds']:.0f} s" if s.get("test_initial") is not None else "no test split")
        click.echo(f"{head} {tail}{'' if ran else ' (finished before)'}", err=True)

    report = run_bench(out_dir, preset=preset, methods=methods, datasets=split_list(datasets) if datasets else None,
                       seeds=seed_list, budget=budget, train_size=train_size, dev_size=dev_size, test_size=test_size,
                       select_k=select_k, select_level=select_level, select_sequential=select_sequential,
                       select_statistic=select_statistic, select_margin=select_margin,
                       task_models=split_models(task_model),
                       optimizer_model=optimizer_model, layout=layout, train_file=train_file, dev_file=dev_file,
                       test_file=test_file, retry_failed=retry_failed, on_cell=progress, executor=executor,
                       address=address)
    folder = Path(out_dir)
    if as_json:
        click.echo(json.dumps(report["methods"]))
        return
    click.echo((folder / "results.md").read_text())
    click.echo(f"written: {folder / 'results.html'}, {folder / 'results.md'}, {folder / 'results.json'}"
               + (f", {folder / 'plots'}/" if report["meta"]["plots"] else ""))
    if report["meta"].get("plots_skipped"):
        click.echo(f"no plots: {report['meta']['plots_skipped']}", err=True)


@main.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.option("--quiet", is_flag=True)
@click.pass_context
def resume(ctx: click.Context, run_id: str, as_json: bool, quiet: bool) -> None:
    """Continue a killed run without repeating any completed model call."""
    from promptgym import api

    result = api.resume(run_id, store_url=ctx.obj["store"], quiet=quiet)
    _print_summary(result.summary, as_json)


RUN_STATUSES = ("running", "interrupted", "finished", "failed")


@main.command()
@click.option("--method", default=None, help="Only runs of this method.")
@click.option("--dataset", default=None, help="Only runs whose dataset contains this text.")
@click.option("--status", type=click.Choice(RUN_STATUSES), default=None, help="Only runs with this status.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, metavar="YYYY-MM-DD",
              help="Only runs created on or after this day (local time).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="The newest N runs that pass the filters.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def runs(ctx: click.Context, method: str | None, dataset: str | None, status: str | None, since: Any,
         limit: int | None, as_json: bool) -> None:
    """List stored runs, newest first: train score, test start -> returned, delta, kept start, calls."""
    from promptgym import api

    rows = api.runs(store_url=ctx.obj["store"], method=method, dataset=dataset, status=status,
                    since=None if since is None else since.timestamp(), limit=limit)
    if as_json:
        keys = ("run_id", "method", "dataset", "status", "best_score", *api.RUN_RESULT_FIELDS)
        click.echo(json.dumps([{k: r[k] for k in keys} for r in rows]))
        return
    from promptgym.report import runs_table

    runs_table(rows, filtered=any(v is not None for v in (method, dataset, status, since)))


@main.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (a, b, paired, paired_note).")
@click.pass_context
def compare(ctx: click.Context, run_a: str, run_b: str, as_json: bool) -> None:
    """Two finished runs side by side, and their returned prompts compared on the same test examples
    (B - A, 95% paired bootstrap interval, paired p-value)."""
    from promptgym import api

    record = api.compare(run_a, run_b, store_url=ctx.obj["store"])
    if as_json:
        click.echo(json.dumps(record))
        return
    from promptgym.report import compare_table

    compare_table(record)


@main.command()
@click.argument("run_id")
@click.pass_context
def show(ctx: click.Context, run_id: str) -> None:
    """Show a run's candidates with their lineage (parents, operation) and latest score on each split."""
    from promptgym import api
    from promptgym.report import candidates_table

    details = api.show(run_id, store_url=ctx.obj["store"])
    candidates_table(details.run, details.candidates, details.scores)


@main.command()
@click.argument("run_id")
@click.option("-o", "--out", default=None, metavar="FILE",
              help="Where to write the page [default: promptgym-report-RUN_ID.html].")
@click.pass_context
def report(ctx: click.Context, run_id: str, out: str | None) -> None:
    """Write a run's report as one self-contained HTML file: prompts with a word diff, final
    selection, the held-out result, trajectory, candidates, lineage, cost, flipped examples."""
    from promptgym import api

    path = api.report(run_id, out=out, store_url=ctx.obj["store"])
    click.echo(f"written: {path}")


@main.command()
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["json", "txt", "python"]), default="json", show_default=True,
              help="json: the prompt, label words, its template with {input} and {options} and the scoring it "
                   "assumes, and for a choice task a generation-ready prompt; txt: the prompt to paste into a chat "
                   "(for a choice task the options listed, for generation + matching); python: a standalone "
                   "snippet that builds the exact request, and the generation-ready one with answer matching.")
@click.option("-o", "--output", default=None, metavar="FILE", help="Write to FILE instead of stdout.")
@click.pass_context
def export(ctx: click.Context, run_id: str, fmt: str, output: str | None) -> None:
    """Export a finished run's returned prompt, with its template, ready to paste into code. Each
    format says which scoring it assumes: log-probability of the options (promptgym's own request)
    or generation + matching (a prompt that lists the options, for a chat API that generates)."""
    from promptgym import api

    text = api.export(run_id, fmt, store_url=ctx.obj["store"])
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise PromptgymError(f"{output}: cannot write ({exc.strerror})") from None
    click.echo(f"written: {output}", err=True)


@main.command()
@click.argument("run_id")
@click.option("--input", "inputs", multiple=True, help="Text to answer (repeatable).")
@click.option("--field", "fields", multiple=True, metavar="NAME=VALUE",
              help="A field of one input, for a run with an input template (repeat for each field).")
@click.option("--input-json", multiple=True, metavar="JSON",
              help="One input's fields as a JSON object, for a run with an input template (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list (with per-input details).")
@click.pass_context
def predict(ctx: click.Context, run_id: str, inputs: tuple[str, ...], fields: tuple[str, ...],
            input_json: tuple[str, ...], as_json: bool) -> None:
    """Answer new inputs with a finished run (per-input prompt selection for dp2o). A run whose
    input is rendered from fields takes them with --field or --input-json."""
    from promptgym import api

    rows = api.predict(run_id, _predict_inputs(inputs, fields, input_json), store_url=ctx.obj["store"])
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        shown = json.dumps(row["fields"], ensure_ascii=False) if "fields" in row else row["input"]
        click.echo(f"{row['prediction']}\t{shown}")


if __name__ == "__main__":  # pragma: no cover
    main()
