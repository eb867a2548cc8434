"""BIG-bench JSON tasks, fetched one task at a time.

A task is ``TASK/task.json`` (and, for a task with subtasks, ``TASK/SUBTASK/task.json``) in the
BIG-bench repository's ``bigbench/benchmark_tasks`` folder. The sources, tried in this order until
one supplies the task:

1. **cache**: ``$PROMPTGYM_HOME/downloads/bigbench-tasks/`` (files fetched from the raw URL) and
   ``downloads/bigbench-1.0.0-tasks/`` (files extracted from the sdist, also by earlier releases).
2. **sdist** on this machine: ``PROMPTGYM_BIGBENCH_SDIST``, else ``downloads/bigbench-1.0.0.tar.gz``
   if an earlier release fetched it. Its files are extracted into the cache on first use.
3. **raw URL**: ``PROMPTGYM_BIGBENCH_URL`` (default :data:`RAW_URL`) + ``/TASK[/SUBTASK]/task.json``,
   a few hundred KB per task; what arrives is checked (UTF-8 JSON object, every example with
   ``input`` and ``target`` or ``target_scores``) before it is written to the cache.
4. **sdist via pip**, when none is on this machine: ``pip download bigbench==1.0.0`` (358 MB). The
   public index now serves only 0.0.1, so this mostly fails; it stays for private indexes and
   mirrors that keep 1.0.0. It is not tried when the raw URL answered 404 (no such task: the sdist
   would not have it either).

When every source fails, the error is one line naming each source tried and why it failed. Inside
:func:`no_download`, only the first two are tried.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import NoReturn

from promptgym.data.dataset import Dataset, Example
from promptgym.data.download import DownloadError, downloads_allowed, fetch, write_atomic
from promptgym.data.download import no_download  # noqa: F401  (re-exported: it was defined here)
from promptgym.data.rows import check_choices, check_text
from promptgym.errors import DataError
from promptgym.paths import downloads_dir
from promptgym.secrets import redact_url

BIGBENCH_VERSION = "1.0.0"
_TASKS_PREFIX = f"bigbench-{BIGBENCH_VERSION}/bigbench/benchmark_tasks/"
SDIST_NAME = f"bigbench-{BIGBENCH_VERSION}.tar.gz"

# The repository's main branch (BIG-bench made no release after 1.0.0, whose files are the sdist's).
# To pin the files, put a commit in place of main, or name a mirror, in PROMPTGYM_BIGBENCH_URL.
RAW_URL = "https://raw.githubusercontent.com/google/BIG-bench/main/bigbench/benchmark_tasks"
TASKS_DIR = "bigbench-tasks"  # under downloads/: files fetched from the raw URL
SUBTASKS_FILE = ".subtasks.json"  # in a parent task's folder, written last: its subtasks are all there
MAX_TASK_BYTES = 64 * 2**20  # the largest BIG-bench task.json is a few MB
DEFAULT_TIMEOUT = 10.0  # seconds per connect and per read
_NAME_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_PIP_FAILED = "bigbench: could not download the sdist with pip: "


class _Miss(Exception):
    """One source could not supply the task. ``absent``: it says the task is not there (as opposed to
    failing to answer, or answering with something unusable)."""

    def __init__(self, reason: str, absent: bool = False) -> None:
        super().__init__(reason)
        self.absent = absent


class _Setting(DataError):
    """A bad setting (an environment variable): raised at once, not taken for a failed source."""


# A source gives the task's files (relative path -> parsed task.json, the asked-for file first) and
# what to do once they proved good (write them to the cache), or raises _Miss.
_Files = dict[str, dict]
_Got = tuple[_Files, Callable[[], None] | None]


def load_bigbench(name: str) -> Dataset:
    """``name`` is ``task`` or ``task/subtask``; a parent task with subtasks loads all of them."""
    name = name.strip("/")
    if not name:
        raise DataError("bigbench: give a task name, e.g. bigbench:multiemo/all_sentence_en")
    parts = name.split("/")
    if len(parts) > 2 or not all(_NAME_PART.fullmatch(p) for p in parts):
        raise DataError(f"bigbench:{name}: not a task name (TASK or TASK/SUBTASK: letters, digits, '_', '-', '.')")
    spec = f"bigbench:{name}"
    offline = not downloads_allowed()
    tried: list[str] = []
    absent = True
    sources: list[tuple[str, Callable[[], _Got]]] = [("cache", lambda: _from_cache(name))]
    sdist = _local_sdist()
    sources.append((f"sdist {sdist}" if isinstance(sdist, Path) else "sdist", lambda: _from_sdist(name, sdist)))
    url_404 = False
    if not offline:
        url = _task_url(os.environ.get("PROMPTGYM_BIGBENCH_URL") or RAW_URL, f"{name}/task.json")
        sources.append((f"raw URL {redact_url(url)}", lambda: _from_url(name)))
        if sdist is None:
            sources.append(("sdist via pip", lambda: _from_pip(name, url_404)))
    for label, source in sources:
        try:
            files, save = source()
            dataset = _build(name, files)
        except _Miss as miss:
            tried.append(f"{label} ({miss})")
            absent = absent and miss.absent
            url_404 = url_404 or (label.startswith("raw URL") and miss.absent)
            continue
        except _Setting:
            raise
        except DataError as exc:  # the files arrived but are not a usable task
            message = str(exc)
            tried.append(f"{label} ({message[len(spec) + 2:] if message.startswith(spec + ': ') else message})")
            absent = False
            continue
        if save is not None:
            try:
                save()
            except OSError as exc:
                print(f"promptgym: warning: {spec}: not cached ({exc})", file=sys.stderr)
        return dataset
    if offline:
        head = "not on this machine (downloads are off here)"
    else:
        head = "no such BIG-bench task in any source" if absent else "could not be loaded from any source"
    raise DataError(f"{spec}: {head}: " + "; ".join(tried))


def _build(name: str, files: _Files) -> Dataset:
    """The dataset of the task's files; a malformed example is one line naming it and the field."""
    own = f"{name}/task.json"
    spec = f"bigbench:{name}"
    main = files.get(own, {})
    examples = _parse_examples(main, spec, prefix="")
    description = main.get("task_prefix") or main.get("description")
    if not examples:  # a parent task: its examples live in the subtasks
        for rel, sub in files.items():
            if rel == own:
                continue
            sub_name = rel[len(name) + 1 : -len("/task.json")]
            examples += _parse_examples(sub, spec, prefix=f"{sub_name}:")
            description = description or sub.get("task_prefix")
    if isinstance(description, str):
        description = description.strip() or None
    return Dataset(name=name, examples=examples, description=description, source=spec)


def _has_examples(task: dict) -> bool:
    return task.get("examples") not in (None, [])


# -- source 1: the cache -----------------------------------------------------------------------------


def _tasks_root() -> Path:
    return downloads_dir() / TASKS_DIR


def _cache_root() -> Path:
    """Where the sdist's task files are extracted (and were, by earlier releases)."""
    return downloads_dir() / f"bigbench-{BIGBENCH_VERSION}-tasks"


def _from_cache(name: str) -> _Got:
    legacy = _cache_root()
    try:
        index = json.loads((legacy / "index.json").read_text())
    except (OSError, ValueError):
        index = []
    wanted = _wanted(index, name)
    if wanted and all((legacy / rel).is_file() for rel in wanted):
        return {rel: _read_task_json(legacy / rel, rel) for rel in wanted}, None
    root = _tasks_root()
    own = f"{name}/task.json"
    if (root / own).is_file():
        main = _read_task_json(root / own, own)
        if _has_examples(main) or "/" in name:
            return {own: main}, None
        listed = _listed_subtasks(root / name / SUBTASKS_FILE)
        if listed and all((root / name / sub / "task.json").is_file() for sub in listed):
            rels = [f"{name}/{sub}/task.json" for sub in listed]
            return {own: main, **{rel: _read_task_json(root / rel, rel) for rel in rels}}, None
    return _fail(f"{root}: not there", absent=True)


def _listed_subtasks(path: Path) -> list[str] | None:
    try:
        listed = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(listed, list) and all(isinstance(s, str) and _NAME_PART.fullmatch(s) for s in listed)
    return listed if ok else None


def _wanted(index: list[str], name: str) -> list[str]:
    """The task's files among an sdist's task.json paths (a parent: its own and every subtask's)."""
    return [p for p in index if isinstance(p, str) and (p == f"{name}/task.json" or p.startswith(f"{name}/"))]


# -- source 2 (and 4): the sdist ---------------------------------------------------------------------


def _local_sdist() -> Path | str | None:
    """The sdist on this machine: a Path, or why PROMPTGYM_BIGBENCH_SDIST is unusable, or None."""
    override = os.environ.get("PROMPTGYM_BIGBENCH_SDIST")
    if override:
        path = Path(override).expanduser()
        return path if path.is_file() else f"PROMPTGYM_BIGBENCH_SDIST={override}: no such file"
    target = downloads_dir() / SDIST_NAME
    return target if target.is_file() else None


def _from_sdist(name: str, sdist: Path | str | None) -> _Got:
    if not isinstance(sdist, Path):
        return _fail(sdist or "none on this machine; PROMPTGYM_BIGBENCH_SDIST=FILE names one", absent=sdist is None)
    root = _cache_root()
    try:
        wanted = _wanted(_task_index(root, sdist), name)
        if not wanted:
            return _fail("no such task in it", absent=True)
        _extract_task(root, sdist, wanted)
    except (tarfile.TarError, EOFError, OSError) as exc:
        return _fail(f"could not read or extract it: {exc}")
    return {rel: _read_task_json(root / rel, rel) for rel in wanted}, None


def _task_index(root: Path, sdist: Path) -> list[str]:
    """Relative paths of every task.json in the sdist ("multiemo/all_sentence_en/task.json")."""
    index = root / "index.json"
    with suppress(OSError, ValueError):
        return json.loads(index.read_text())
    with tarfile.open(sdist, "r:gz") as tar:
        names = sorted(m.name[len(_TASKS_PREFIX):] for m in tar.getmembers()
                       if m.name.startswith(_TASKS_PREFIX) and m.name.endswith("/task.json"))
    write_atomic(index, json.dumps(names).encode())
    return names


def _extract_task(root: Path, sdist: Path, wanted: list[str]) -> None:
    """Extract every task.json of one task (parent and subtasks) in one pass over the tarball."""
    missing = [w for w in wanted if not (root / w).exists()]
    if not missing:
        return
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar:
            rel = member.name[len(_TASKS_PREFIX):] if member.name.startswith(_TASKS_PREFIX) else None
            if rel in missing:
                write_atomic(root / rel, tar.extractfile(member).read())  # type: ignore[union-attr]


def _from_pip(name: str, url_404: bool) -> _Got:
    if url_404:
        return _fail("not tried: the raw URL has no such task, so the sdist has none", absent=True)
    print(f"Trying pip for the bigbench {BIGBENCH_VERSION} sdist (358 MB, once per machine)...", file=sys.stderr)
    try:
        sdist = download_sdist(downloads_dir())
    except DataError as exc:
        message = str(exc)
        return _fail(message[len(_PIP_FAILED):] if message.startswith(_PIP_FAILED) else message)
    return _from_sdist(name, sdist)


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
            raise DataError(f"{_PIP_FAILED}{reason}")
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


# -- source 3: the raw URL ---------------------------------------------------------------------------


def _base_url() -> str:
    base = os.environ.get("PROMPTGYM_BIGBENCH_URL") or RAW_URL
    if not re.match(r"https?://[^/]", base):
        raise _Setting(f"PROMPTGYM_BIGBENCH_URL={redact_url(base)}: expected an http:// or https:// URL")
    return base


def _task_url(base: str, rel: str) -> str:
    """``rel`` appended to the base URL's path (a trailing slash or a ``?query`` on it is kept right)."""
    head, sep, query = base.partition("?")
    return f"{head.rstrip('/')}/{rel}{sep}{query}"


def _timeout() -> float:
    raw = os.environ.get("PROMPTGYM_BIGBENCH_TIMEOUT")
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise _Setting(f"PROMPTGYM_BIGBENCH_TIMEOUT={raw}: expected seconds, a number above 0")
    return value


def _from_url(name: str) -> _Got:
    """The task's files from the raw URL; written to the cache (by the returned callable) only after
    the dataset built from them proved good.

    The raw host cannot list a folder. A task whose task.json has examples is complete. A parent
    task's task.json (no examples) is followed only if it names its subtasks (a ``subtasks`` list of
    names, or of objects with a ``name``). BIG-bench's own loader finds subtasks by listing folders,
    so its parent files need not name them; then the load asks for a subtask (the sdist can list
    them).
    """
    base, timeout = _base_url(), _timeout()
    own = f"{name}/task.json"
    main, raw = _fetch_task(_task_url(base, own), own, timeout)
    files, blobs = {own: main}, {own: raw}
    subtasks: list[str] = []
    if not _has_examples(main) and "/" not in name:
        named = _named_subtasks(main)
        if not named:
            return _fail(f"{own} has no examples and names no subtasks, and the raw host cannot list "
                         f"folders: name one, bigbench:{name}/SUBTASK (the sdist can list them)")
        for sub in named:
            rel = f"{name}/{sub}/task.json"
            try:
                files[rel], blobs[rel] = _fetch_task(_task_url(base, rel), rel, timeout)
            except _Miss as miss:
                return _fail(f"subtask {redact_url(_task_url(base, rel))}: {miss}")
        subtasks = named

    def save() -> None:
        root = _tasks_root()
        for rel in sorted(blobs, key=lambda r: r == own):  # the parent after its subtasks
            write_atomic(root / rel, blobs[rel])
        if subtasks:  # last: a parent is in the cache only once every subtask is
            write_atomic(root / name / SUBTASKS_FILE, json.dumps(subtasks).encode())

    return files, save


def _named_subtasks(task: dict) -> list[str] | None:
    """The subtask names a parent task.json lists, if it does (``"name"`` or ``"task:name"``)."""
    listed = task.get("subtasks")
    if not isinstance(listed, list) or not listed:
        return None
    names = []
    for item in listed:
        value = item.get("name") if isinstance(item, dict) else item
        if not isinstance(value, str) or not _NAME_PART.fullmatch(value.rsplit(":", 1)[-1]):
            return _fail(f"field 'subtasks' holds {json.dumps(value)[:60]}, not a subtask name")
        names.append(value.rsplit(":", 1)[-1])
    return list(dict.fromkeys(names))


def _fetch_task(url: str, rel: str, timeout: float) -> tuple[dict, bytes]:
    try:
        raw = fetch(url, max_bytes=MAX_TASK_BYTES, timeout=timeout, what="task")
    except DownloadError as exc:
        return _fail(str(exc), absent=exc.absent)
    try:
        return _decode_task_json(raw, rel), raw
    except DataError as exc:
        return _fail(str(exc)[len(rel) + 2:])


def _fail(reason: str, absent: bool = False) -> NoReturn:
    raise _Miss(reason, absent)


# -- task files --------------------------------------------------------------------------------------


def _decode_task_json(data: bytes, where: str) -> dict:
    """A task.json's bytes as a dict; bad bytes or bad JSON are one line naming ``where``."""
    try:
        task = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text ({exc.reason})") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise DataError(f"{where}: not valid JSON ({getattr(exc, 'msg', 'nested too deeply')})") from None
    if not isinstance(task, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(task).__name__}")
    return task


def _read_task_json(path: Path, where: str) -> dict:
    """A task.json file as a dict; bad bytes or bad JSON are one line naming the task file."""
    return _decode_task_json(path.read_bytes(), where)


def _parse_examples(task: dict, spec: str, prefix: str) -> list[Example]:
    """A task's examples; every malformed row is one line naming the example and the field."""
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
