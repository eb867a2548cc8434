"""Write PAPER/TASK.jsonl for the ``paper:`` tasks from local copies of the seed papers' repositories.

    python benchmarks/data/build.py --snapshot keirp/automatic_prompt_engineer=PATH \\
        --snapshot microsoft/LMOps=PATH --snapshot mingkaid/rl-prompt=PATH [--out DIR]

A snapshot is a git repository (bare or not) holding the pinned commit, or a plain folder holding the
files themselves; either way every file read must be the pinned one (its git blob id). The rows come
from promptgym.data.papers' converters, the ones ``paper:`` loads use, so both give the same rows.
``PROMPTGYM_PAPER_SNAPSHOTS="owner/repo=PATH,..."`` stands for the --snapshot options.

promptgym's repository holds no data from these repositories: the output goes to ``--out DIR`` (load
it with ``PROMPTGYM_PAPER_DATA=DIR``) or, by default, to this folder's PAPER/ subfolders, which git
ignores and which ``paper:`` reads when promptgym runs from this checkout.

- Every task is written (``--task PAPER/TASK`` or ``--task PAPER``, repeatable: only those); a
  stale PAPER/*.jsonl of no task is removed when every task is built.
- ``--check``: compare the folder with what would be written instead of writing; exit status 1 if
  anything differs, is missing or is left over.
- ``--fill-cache``: also put the pinned upstream files into $PROMPTGYM_HOME/downloads/papers, so
  that these ``paper:`` tasks load on this machine without a download.
- ``--table``: print the README's task table (rows, the paper's test rows, answer type, whether the
  licences would allow redistribution).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from promptgym.errors import DataError
from promptgym.data.download import write_atomic
from promptgym.data.papers import (PaperTask, TASKS, cache_path, get_task, git_blob_sha,
                                   rows_to_jsonl)

HERE = Path(__file__).resolve().parent
SNAPSHOTS_ENV = "PROMPTGYM_PAPER_SNAPSHOTS"


class BuildError(Exception):
    pass


def read_pinned(snapshot: Path, commit: str, path: str, blob: str | None) -> bytes:
    """The file at ``commit`` from a git snapshot, or from a plain folder; checked against ``blob``."""
    if (snapshot / "HEAD").is_file() or (snapshot / ".git").exists():
        proc = subprocess.run(["git", "-C", str(snapshot), "cat-file", "blob", f"{commit}:{path}"],
                              capture_output=True)
        if proc.returncode != 0:
            raise BuildError(f"{snapshot}: no {path} at {commit[:12]} ({proc.stderr.decode().strip()})")
        data = proc.stdout
    else:
        file = snapshot / path
        if not file.is_file():
            raise BuildError(f"{snapshot}: no {path}")
        data = file.read_bytes()
    if blob is not None and git_blob_sha(data) != blob:
        raise BuildError(f"{snapshot}: {path} is not the file at {commit[:12]} "
                         f"(git blob {git_blob_sha(data)[:12]}, expected {blob[:12]})")
    return data


def task_files(task: PaperTask, snapshots: dict[str, Path]) -> dict[str, bytes]:
    if task.repo not in snapshots:
        raise BuildError(f"paper:{task.spec}: no snapshot of {task.repo} (--snapshot {task.repo}=PATH; "
                         f"--task PAPER/TASK builds only some tasks)")
    return {role: read_pinned(snapshots[task.repo], task.commit, f.path, f.blob) for role, f in task.files.items()}


def build(snapshots: dict[str, Path], out: Path, tasks: list[PaperTask], check: bool = False,
          fill_cache: bool = False, prune: bool = True) -> tuple[list[dict], list[str]]:
    """Write (or with ``check`` compare) ``out/PAPER/TASK.jsonl`` for ``tasks``; with ``prune``, also
    remove (or report) any other .jsonl in the PAPER folders of these tasks. Returns one summary per
    task and the paths that differ (``check``) or were written or removed."""
    summaries, changed = [], []
    wanted = set()
    for task in tasks:
        data = task_files(task, snapshots)
        where = {role: f"{task.repo}@{task.commit[:12]}:{f.path}" for role, f in task.files.items()}
        keep, _ = task.convert(data, where)
        rows = task.rows(data, where)
        text = rows_to_jsonl(rows)
        target = out / f"{task.spec}.jsonl"
        wanted.add(target)
        old = target.read_bytes() if target.is_file() else None
        if old != text.encode():
            changed.append(str(target))
            if not check:
                write_atomic(target, text.encode())
        if fill_cache:
            for role, blob in data.items():
                cached = cache_path(task, role)
                if not cached.is_file() or cached.read_bytes() != blob:
                    write_atomic(cached, blob)
        choices = rows[0].get("choices")
        summaries.append(dict(spec=f"paper:{task.spec}", rows=len(rows), evaluation=len(keep),
                              bytes=len(text.encode()), redistributable=task.redistributable,
                              answers=(f"choice, {len(choices)}-way ({', '.join(f'`{c}`' for c in choices)})"
                                       if choices else "free text"),
                              several=sum(isinstance(r["target"], list) for r in rows)))
    if prune:
        papers = sorted({task.spec.split("/")[0] for task in tasks})
        for stale in sorted(p for paper in papers for p in (out / paper).glob("*.jsonl")):
            if stale not in wanted:
                changed.append(str(stale))
                if not check:
                    stale.unlink()
    return summaries, changed


def table(summaries: list[dict]) -> str:
    lines = ["| dataset | rows | the paper's test rows | answers | licences allow redistribution |",
             "|---|---|---|---|---|"]
    for s in summaries:
        several = f" ({s['several']} with several accepted)" if s["several"] else ""
        lines.append(f"| `{s['spec']}` | {s['rows']} | {s['evaluation']} | {s['answers']}{several} | "
                     f"{'yes' if s['redistributable'] else 'no'} |")
    return "\n".join(lines)


def parse_snapshots(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        repo, sep, path = item.partition("=")
        if not sep or repo.count("/") != 1 or not path:
            raise BuildError(f"--snapshot {item!r}: expected OWNER/REPO=PATH")
        out[repo] = Path(path).expanduser()
    return out


def select(names: list[str]) -> list[PaperTask]:
    """The tasks named (PAPER/TASK or PAPER), sorted by spec; every task when none is named."""
    if not names:
        return sorted(TASKS.values(), key=lambda t: t.spec)
    papers = {spec.split("/")[0] for spec in TASKS}
    specs = set()
    for name in names:
        name = name.strip().strip("/")
        if name in papers:
            specs.update(spec for spec in TASKS if spec.split("/")[0] == name)
        else:
            specs.add(get_task(name).spec)  # DataError naming the known tasks
    return [TASKS[spec] for spec in sorted(specs)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snapshot", action="append", default=[], metavar="OWNER/REPO=PATH",
                        help=f"a local copy of a repository (default: ${SNAPSHOTS_ENV}, comma-separated)")
    parser.add_argument("--out", type=Path, default=HERE,
                        help="where PAPER/TASK.jsonl go (default: benchmarks/data of this checkout, git-ignored)")
    parser.add_argument("--task", action="append", default=[], metavar="PAPER[/TASK]",
                        help="only these tasks (default: every task)")
    parser.add_argument("--check", action="store_true", help="compare the folder instead of writing")
    parser.add_argument("--fill-cache", action="store_true", help="also cache the pinned upstream files")
    parser.add_argument("--table", action="store_true", help="print the README's task table")
    args = parser.parse_args(argv)
    items = args.snapshot or [s for s in os.environ.get(SNAPSHOTS_ENV, "").split(",") if s.strip()]
    try:
        snapshots = parse_snapshots(items)
        tasks = select(args.task)
        summaries, changed = build(snapshots, args.out, tasks, check=args.check, fill_cache=args.fill_cache,
                                   prune=not args.task)
    except (BuildError, DataError) as exc:
        print(f"build.py: {exc}", file=sys.stderr)
        return 2
    if args.table:
        print(table(summaries))
    total = sum(s["bytes"] for s in summaries)
    verb = "differ" if args.check else "changed"
    print(f"{len(summaries)} tasks, {total / 1e6:.2f} MB in {args.out}; {len(changed)} files {verb}"
          + "".join(f"\n  {c}" for c in changed), file=sys.stderr)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
