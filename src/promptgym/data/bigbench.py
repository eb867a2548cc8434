"""BIG-bench JSON tasks, read from the ``bigbench`` sdist on PyPI.

The sdist (358 MB) is fetched once per machine with ``pip download --no-deps`` (the running
Python's pip, with the user's index configuration) into ``$PROMPTGYM_HOME/downloads``; the task
files of a task are extracted on first use and kept, so later loads read a small JSON file only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from promptgym.data.dataset import Dataset, Example
from promptgym.errors import DataError
from promptgym.paths import downloads_dir

BIGBENCH_VERSION = "1.0.0"
_TASKS_PREFIX = f"bigbench-{BIGBENCH_VERSION}/bigbench/benchmark_tasks/"
SDIST_NAME = f"bigbench-{BIGBENCH_VERSION}.tar.gz"


_NO_DOWNLOAD: ContextVar[bool] = ContextVar("promptgym_bigbench_no_download", default=False)


@contextmanager
def no_download() -> Iterator[None]:
    """Inside it, a task not yet on this machine is a DataError instead of a 358 MB download (a
    report that would like to show inputs must not fetch data to do so)."""
    token = _NO_DOWNLOAD.set(True)
    try:
        yield
    finally:
        _NO_DOWNLOAD.reset(token)


def sdist_path() -> Path:
    """The sdist tarball, downloaded on first call (or taken from PROMPTGYM_BIGBENCH_SDIST)."""
    override = os.environ.get("PROMPTGYM_BIGBENCH_SDIST")
    if override:
        path = Path(override)
        if not path.exists():
            raise DataError(f"PROMPTGYM_BIGBENCH_SDIST={override}: no such file")
        return path
    target = downloads_dir() / SDIST_NAME
    if not target.exists():
        if _NO_DOWNLOAD.get():
            raise DataError(f"the bigbench sdist is not on this machine ({target})")
        print(f"Fetching the bigbench {BIGBENCH_VERSION} sdist (358 MB, once per machine)...", file=sys.stderr)
        download_sdist(downloads_dir())
    return target


def pip_download_command(python: str, dest: Path) -> list[str]:
    """The pip call that fetches the sdist, with the user's own pip configuration (index, proxy).

    pip prepares an sdist's metadata even for ``download``; build isolation stays on so that it
    does so in a throwaway environment with setuptools and wheel from the index. With
    ``--no-build-isolation`` it would use the running venv's, and a venv made by ``python -m venv``
    has no ``wheel`` ("invalid command 'bdist_wheel'").
    """
    return [python, "-m", "pip", "download", "--no-deps", "--no-binary", "bigbench",
            "--disable-pip-version-check", f"bigbench=={BIGBENCH_VERSION}", "-d", str(dest)]


def download_sdist(dest: Path, python: str | None = None) -> Path:
    """Fetch the sdist into ``dest`` with ``python``'s pip (default: the running interpreter's); a
    failure is one line with pip's own reason.

    pip writes into a scratch folder first, so a killed download never leaves a partial tarball
    where a later load would take it for the real one.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bigbench-", dir=dest) as scratch:
        proc = subprocess.run(pip_download_command(python or sys.executable, Path(scratch)), capture_output=True, text=True)
        got = Path(scratch) / SDIST_NAME
        if proc.returncode != 0 or not got.exists():
            reason = pip_error(proc.stderr) if proc.returncode != 0 else f"pip saved no {SDIST_NAME}"
            raise DataError(f"bigbench: could not download the sdist with pip: {reason}")
        got.replace(dest / SDIST_NAME)
    return dest / SDIST_NAME


def pip_error(stderr: str) -> str:
    """The line of pip's stderr that says why it failed.

    pip ends a failed build with "hint: See above for details."; the reason is inside the
    subprocess block ("[13 lines of output] ... error: invalid command 'bdist_wheel' ...
    [end of output]") or on pip's own "ERROR:" lines.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    block: list[str] = []
    inside = False
    for line in lines:
        if re.search(r"\[\d+ lines? of output\]", line):
            inside, block = True, []
        elif line == "[end of output]":
            inside = False
        elif inside:
            block.append(line)
    said = [line for line in block if line.lower().startswith("error")] or block[-1:]
    if said:
        return said[-1]
    errors = [line[len("ERROR:"):].strip() for line in lines if line.startswith("ERROR:")]
    retries = [line for line in lines if line.startswith("WARNING: Retrying")]
    if errors:
        return errors[-1] + (f" (the index did not answer: {retries[-1]})" if retries else "")
    rest = [line for line in lines if not line.startswith(("hint:", "note:", "WARNING:"))]
    return (rest or lines or ["pip failed with no output"])[-1]


def _cache_root() -> Path:
    return downloads_dir() / f"bigbench-{BIGBENCH_VERSION}-tasks"


def _task_index(root: Path) -> list[str]:
    """Relative paths of every task.json in the sdist ("multiemo/all_sentence_en/task.json")."""
    index = root / "index.json"
    if index.exists():
        return json.loads(index.read_text())
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist_path(), "r:gz") as tar:
        names = [m.name[len(_TASKS_PREFIX):] for m in tar.getmembers()
                 if m.name.startswith(_TASKS_PREFIX) and m.name.endswith("/task.json")]
    tmp = index.with_suffix(".tmp")
    tmp.write_text(json.dumps(sorted(names)))
    tmp.replace(index)
    return sorted(names)


def _extract_task(root: Path, task: str, wanted: list[str]) -> None:
    """Extract every task.json of one task (parent and subtasks) in one pass over the tarball."""
    missing = [w for w in wanted if not (root / w).exists()]
    if not missing:
        return
    with tarfile.open(sdist_path(), "r:gz") as tar:
        for member in tar:
            rel = member.name[len(_TASKS_PREFIX):] if member.name.startswith(_TASKS_PREFIX) else None
            if rel in missing:
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                out = root / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp = out.with_suffix(".tmp")
                tmp.write_bytes(data)
                tmp.replace(out)


def load_bigbench(name: str) -> Dataset:
    """``name`` is ``task`` or ``task/subtask``; a parent task with subtasks loads all of them."""
    name = name.strip("/")
    if not name:
        raise DataError("bigbench: give a task name, e.g. bigbench:multiemo/all_sentence_en")
    root = _cache_root()
    index = _task_index(root)
    wanted = [p for p in index if p == f"{name}/task.json" or p.startswith(f"{name}/")]
    if not wanted:
        raise DataError(f"bigbench:{name}: no such BIG-bench task")
    task = name.split("/")[0]
    _extract_task(root, task, wanted)
    own = f"{name}/task.json"
    spec = f"bigbench:{name}"
    main = _read_task_json(root / own, f"{spec} ({own})") if own in wanted else {}
    examples = _parse_examples(main, spec, prefix="")
    description = main.get("task_prefix") or main.get("description")
    if not examples:  # a parent task: its examples live in the subtasks
        for rel in wanted:
            if rel == own:
                continue
            sub = _read_task_json(root / rel, f"{spec} ({rel})")
            sub_name = rel[len(name) + 1 : -len("/task.json")]
            examples += _parse_examples(sub, spec, prefix=f"{sub_name}:")
            description = description or sub.get("task_prefix")
    if isinstance(description, str):
        description = description.strip() or None
    return Dataset(name=name, examples=examples, description=description, source=spec)


def _read_task_json(path: Path, where: str) -> dict:
    """A task.json as a dict; bad bytes or bad JSON are one line naming the task file."""
    try:
        task = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text ({exc.reason})") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise DataError(f"{where}: not valid JSON ({getattr(exc, 'msg', 'nested too deeply')})") from None
    if not isinstance(task, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(task).__name__}")
    return task


def _parse_examples(task: dict, spec: str, prefix: str) -> list[Example]:
    """A task's examples; every malformed row is one line naming the example and the field."""
    from promptgym.data.loaders import check_choices, check_text

    rows = task.get("examples", [])
    if not isinstance(rows, list):
        raise DataError(f"{spec}: field 'examples' must be a list, got {type(rows).__name__}")
    examples = []
    for i, row in enumerate(rows):
        where = f"{spec}: example {prefix}{i}"
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        text = row.get("input")
        if not isinstance(text, str):
            raise DataError(f"{where}: missing field 'input'")
        check_text(text, where, "input")  # may be empty: upstream tasks have such examples (multiemo)
        if "target_scores" in row:
            scores = row["target_scores"]
            if not isinstance(scores, dict) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()):
                raise DataError(f"{where}: field 'target_scores' must map each option to a number")
            if len(scores) < 2:
                raise DataError(f"{where}: field 'target_scores' needs at least two options")
            choices = check_choices([str(k) for k in scores], where, "target_scores")
            best = max(scores.values())
            target = next(str(k).strip() for k, v in scores.items() if v == best)
            examples.append(Example(f"{prefix}{i}", text, (target,), choices, where=where))
        elif "target" in row:
            raw = row["target"]
            if isinstance(raw, (dict, type(None))) or (isinstance(raw, list) and any(isinstance(t, (dict, list, type(None))) for t in raw)):
                raise DataError(f"{where}: field 'target' must be text or a list of texts")
            targets = tuple(str(t) for t in raw) if isinstance(raw, list) else (str(raw),)
            if not targets or not all(t.strip() for t in targets):
                raise DataError(f"{where}: empty field 'target'")
            for t in targets:
                check_text(t, where, "target")
            examples.append(Example(f"{prefix}{i}", text, targets, None, where=where))
        else:
            raise DataError(f"{where}: needs 'target_scores' or 'target'")
    return examples
