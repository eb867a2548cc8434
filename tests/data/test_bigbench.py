"""BIG-bench loader: the raw URL against a real loopback HTTP server serving task files laid out like
the repository, the cache, and a tiny sdist of the real one's layout (the real one is 358 MB)."""

from __future__ import annotations

import io
import json
import socket
import tarfile
import time
from pathlib import Path

import pytest

from promptgym.data import bigbench
from promptgym.data.loaders import load_dataset
from promptgym.errors import DataError

from support import FileServer

PREFIX = "bigbench-1.0.0/bigbench/benchmark_tasks/"
REPO_PATH = "/google/BIG-bench/main/bigbench/benchmark_tasks"

MOOD = {"task_prefix": "Say how the writer feels.", "description": "meta text",
        "examples": [{"input": "I love it", "target_scores": {"sad": 0, "happy": 1}},
                     {"input": "I hate it", "target_scores": {"sad": 1, "happy": 0}},
                     {"input": "", "target_scores": {"sad": 1, "happy": 0}}]}
SUB_A = {"task_prefix": "Pick one.", "examples": [{"input": "x", "target_scores": {"yes": 1, "no": 0}}]}
SUB_B = {"examples": [{"input": "y", "target_scores": {"yes": 0, "no": 1}}]}
# As BIG-bench's own parent task.json files are: metadata, no examples, subtasks found by folder.
PARENT = {"name": "multi", "description": "Parent.", "keywords": ["json"]}


def _json(data) -> bytes:
    return json.dumps(data).encode()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No test reaches another host: no proxy, the raw URL on a closed loopback port unless a test
    points it at its server, pip's index an empty folder, a short timeout."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("PROMPTGYM_BIGBENCH_URL", f"http://127.0.0.1:{_closed_port()}{REPO_PATH}")
    monkeypatch.setenv("PROMPTGYM_BIGBENCH_TIMEOUT", "0.5")
    monkeypatch.delenv("PROMPTGYM_BIGBENCH_SDIST", raising=False)
    empty = tmp_path / "no-index"
    empty.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))


@pytest.fixture
def serve(monkeypatch):
    """``serve(files)`` starts a FileServer (support.py) of ``{REPO_PATH}/REL`` (REL as in the
    repository: ``multi/a/task.json``) and points PROMPTGYM_BIGBENCH_URL at it."""
    servers: list[FileServer] = []

    def start(files: dict, trailing_slash: bool = False) -> FileServer:
        server = FileServer(files, root=REPO_PATH)
        servers.append(server)
        monkeypatch.setenv("PROMPTGYM_BIGBENCH_URL", server.base + ("/" if trailing_slash else ""))
        return server

    yield start
    for server in servers:
        server.close()


def _tasks_dir() -> Path:
    return bigbench.downloads_dir() / bigbench.TASKS_DIR


def _cached_files() -> list[str]:
    root = _tasks_dir()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _error(spec: str) -> str:
    with pytest.raises(DataError) as err:
        load_dataset(spec)
    message = str(err.value)
    assert "\n" not in message
    return message


def _add(tar: tarfile.TarFile, name: str, data: dict) -> None:
    blob = json.dumps(data).encode()
    info = tarfile.TarInfo(PREFIX + name)
    info.size = len(blob)
    tar.addfile(info, io.BytesIO(blob))


@pytest.fixture
def sdist(tmp_path, monkeypatch):
    path = tmp_path / "bigbench-1.0.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "mood/task.json", MOOD)
        _add(tar, "qa/task.json", {"description": "Answer.", "examples": [
            {"input": "2+2?", "target": ["4", "four"]}, {"input": "Capital of France?", "target": "Paris"}]})
        _add(tar, "multi/task.json", PARENT)
        _add(tar, "multi/a/task.json", SUB_A)
        _add(tar, "multi/b/task.json", SUB_B)
        _add(tar, "broken/task.json", {"examples": [{"input": "z"}]})
    monkeypatch.setenv("PROMPTGYM_BIGBENCH_SDIST", str(path))
    return path


@pytest.fixture
def empty_sdist(tmp_path, monkeypatch):
    """An sdist without the task: the sdist source answers at once and pip is not tried."""
    path = tmp_path / "empty" / "bigbench-1.0.0.tar.gz"
    path.parent.mkdir()
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "other/task.json", MOOD)
    monkeypatch.setenv("PROMPTGYM_BIGBENCH_SDIST", str(path))
    return path


# -- the sdist -----------------------------------------------------------------------------------


def test_multiple_choice_task(sdist):
    ds = load_dataset("bigbench:mood")
    assert ds.description == "Say how the writer feels."  # task_prefix wins over description
    # the empty input is kept: upstream tasks have such rows (multiemo example 3112), and rejecting
    # one made the README's own multiemo example fail
    assert [e.target for e in ds.examples] == ["happy", "sad", "sad"] and ds.examples[2].input == ""
    assert ds.labels == ("sad", "happy")  # the file's option order is kept
    assert ds.source == "bigbench:mood"


def test_generation_task_keeps_every_accepted_answer(sdist):
    ds = load_dataset("bigbench:qa")
    assert ds.examples[0].targets == ("4", "four") and ds.examples[0].choices is None
    assert ds.description == "Answer."


def test_parent_task_combines_its_subtasks_and_a_subtask_loads_alone(sdist):
    parent = load_dataset("bigbench:multi")
    assert [e.id for e in parent.examples] == ["a:0", "b:0"]
    assert [e.target for e in parent.examples] == ["yes", "no"]
    sub = load_dataset("bigbench:multi/b")
    assert len(sub) == 1 and sub.examples[0].input == "y"


def test_extracted_tasks_are_reused_without_the_tarball(sdist):
    load_dataset("bigbench:mood")
    sdist.unlink()
    assert len(load_dataset("bigbench:mood")) == 3


def test_the_sdist_comes_before_the_raw_url(sdist, serve):
    server = serve({"mood/task.json": _json({"examples": [{"input": "other", "target": "x"}]})})
    assert len(load_dataset("bigbench:mood")) == 3
    assert not server.hits


def test_an_sdist_fetched_by_an_earlier_release_is_used(sdist, monkeypatch, serve):
    server = serve({})
    monkeypatch.delenv("PROMPTGYM_BIGBENCH_SDIST")
    sdist.replace(bigbench.downloads_dir() / bigbench.SDIST_NAME)
    assert len(load_dataset("bigbench:multi")) == 2
    assert not server.hits


def test_bad_names_and_rows_are_one_line_errors(sdist):
    message = _error("bigbench:nope")
    assert message.startswith("bigbench:nope: could not be loaded from any source: cache (")
    assert f"sdist {sdist} (no such task in it)" in message and "(connection refused)" in message
    assert "sdist via pip" not in message  # an sdist is here: pip is not asked for another
    message = _error("bigbench:broken")
    assert f"sdist {sdist} (example 0: needs 'target_scores' or 'target')" in message
    with pytest.raises(DataError, match="give a task name"):
        load_dataset("bigbench:")
    for bad in ("../etc", "a/b/c", "multi/..", "x y"):
        with pytest.raises(DataError, match=r"not a task name \(TASK or TASK/SUBTASK"):
            load_dataset(f"bigbench:{bad}")


def test_a_missing_sdist_setting_is_named_and_the_raw_url_still_tried(monkeypatch, tmp_path, serve):
    serve({"mood/task.json": _json(MOOD)})
    monkeypatch.setenv("PROMPTGYM_BIGBENCH_SDIST", str(tmp_path / "gone.tar.gz"))
    assert len(load_dataset("bigbench:mood")) == 3
    monkeypatch.setenv("PROMPTGYM_BIGBENCH_URL", f"http://127.0.0.1:{_closed_port()}/x")
    assert f"sdist (PROMPTGYM_BIGBENCH_SDIST={tmp_path / 'gone.tar.gz'}: no such file)" in _error("bigbench:qa")


def test_the_cache_of_earlier_releases_is_read(sdist, monkeypatch, serve):
    load_dataset("bigbench:multi")  # extracts into downloads/bigbench-1.0.0-tasks, as releases before did
    sdist.unlink()
    monkeypatch.delenv("PROMPTGYM_BIGBENCH_SDIST")
    server = serve({})
    assert len(load_dataset("bigbench:multi")) == 2 and len(load_dataset("bigbench:multi/a")) == 1
    assert not server.hits


# -- the raw URL ---------------------------------------------------------------------------------


def test_a_subtask_loads_from_the_raw_url_and_the_cache_makes_no_second_request(serve):
    server = serve({"multi/task.json": _json(PARENT), "multi/a/task.json": _json(SUB_A)})
    ds = load_dataset("bigbench:multi/a")
    assert [(e.id, e.target) for e in ds.examples] == [("0", "yes")] and ds.description == "Pick one."
    assert server.hits == {"multi/a/task.json": 1}  # only the task asked for
    assert _cached_files() == ["multi/a/task.json"]
    assert (_tasks_dir() / "multi/a/task.json").read_bytes() == _json(SUB_A)  # the bytes as served
    assert len(load_dataset("bigbench:multi/a")) == 1
    assert server.hits == {"multi/a/task.json": 1}


def test_a_parent_that_names_its_subtasks_loads_them_all_and_is_cached_whole(serve):
    parent = {**PARENT, "subtasks": ["a", {"name": "multi:b"}]}
    server = serve({"multi/task.json": _json(parent), "multi/a/task.json": _json(SUB_A),
                    "multi/b/task.json": _json(SUB_B)})
    ds = load_dataset("bigbench:multi")
    assert [(e.id, e.target) for e in ds.examples] == [("a:0", "yes"), ("b:0", "no")]
    assert ds.description == "Parent."
    assert _cached_files() == ["multi/.subtasks.json", "multi/a/task.json", "multi/b/task.json", "multi/task.json"]
    before = dict(server.hits)
    assert len(load_dataset("bigbench:multi")) == 2 and len(load_dataset("bigbench:multi/b")) == 1
    assert server.hits == before == {"multi/task.json": 1, "multi/a/task.json": 1, "multi/b/task.json": 1}


def test_a_parent_that_names_no_subtasks_asks_for_one_and_is_not_cached(serve):
    serve({"multi/task.json": _json(PARENT), "multi/a/task.json": _json(SUB_A)})
    message = _error("bigbench:multi")
    assert ("multi/task.json has no examples and names no subtasks, and the raw host cannot list folders: "
            "name one, bigbench:multi/SUBTASK (the sdist can list them)") in message
    assert "sdist via pip (No matching distribution found for bigbench==1.0.0" in message
    assert _cached_files() == []
    load_dataset("bigbench:multi/a")  # a cached subtask is not mistaken for the whole parent
    assert "name one, bigbench:multi/SUBTASK" in _error("bigbench:multi")


def test_a_task_with_its_own_examples_is_complete(serve):
    server = serve({"mood/task.json": _json(MOOD)})
    assert load_dataset("bigbench:mood").description == "Say how the writer feels."
    assert server.hits == {"mood/task.json": 1}


def test_a_trailing_slash_on_the_base_url(serve):
    server = serve({"mood/task.json": _json(MOOD)}, trailing_slash=True)
    assert len(load_dataset("bigbench:mood")) == 3
    assert server.lines == [f"GET {REPO_PATH}/mood/task.json HTTP/1.1"]


def test_404_is_no_such_task_and_pip_is_not_asked(serve):
    server = serve({})
    started = time.monotonic()
    message = _error("bigbench:nope")
    assert message == (f"bigbench:nope: no such BIG-bench task in any source: cache ({_tasks_dir()}: not there); "
                       "sdist (none on this machine; PROMPTGYM_BIGBENCH_SDIST=FILE names one); "
                       f"raw URL {server.base}/nope/task.json (404: no such task there); "
                       "sdist via pip (not tried: the raw URL has no such task, so the sdist has none)")
    assert server.hits == {"nope/task.json": 1} and time.monotonic() - started < 2


def test_a_subtask_the_parent_names_but_the_server_lacks(serve, empty_sdist):
    serve({"multi/task.json": _json({**PARENT, "subtasks": ["a", "gone"]}), "multi/a/task.json": _json(SUB_A)})
    assert "/multi/gone/task.json: 404: no such task there)" in _error("bigbench:multi")
    assert _cached_files() == []


@pytest.mark.parametrize("body, reason", [
    (b"<html>rate limited</html>", "not valid JSON (Expecting value)"),
    (b'{"examples": [', "not valid JSON (Expecting value)"),
    (b"\xff\xfe{}", "not UTF-8 text (invalid start byte)"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (_json({"examples": [{"input": "z"}]}), "example 0: needs 'target_scores' or 'target'"),
    (_json({"examples": [{"target": "z"}]}), "example 0: missing field 'input'"),
    (_json({"examples": {"input": "z"}}), "field 'examples' must be a list, got dict"),
    (_json({"examples": [{"input": "z", "target_scores": {"a": 1}}]}), "example 0: field 'target_scores' needs at least two options"),
])
def test_what_arrives_is_checked_before_it_is_cached(serve, empty_sdist, body, reason):
    server = serve({"mood/task.json": body})
    message = _error("bigbench:mood")
    assert message.startswith("bigbench:mood: could not be loaded from any source: ")
    assert f"raw URL {server.base}/mood/task.json ({reason}" in message
    assert _cached_files() == []


def test_a_server_that_never_answers_fails_in_the_timeout_not_minutes(serve, empty_sdist):
    server = serve({"mood/task.json": "hang"})
    started = time.monotonic()
    message = _error("bigbench:mood")
    assert "(no answer in 0.5 s)" in message
    assert time.monotonic() - started < 3 and server.hits == {"mood/task.json": 1}  # a timeout is not retried


def test_a_file_over_the_size_cap_is_refused(serve, empty_sdist, monkeypatch):
    monkeypatch.setattr(bigbench, "MAX_TASK_BYTES", 100)
    serve({"mood/task.json": _json(MOOD), "qa/task.json": (_json(MOOD), "unsized")})
    assert f"({len(_json(MOOD)):,} bytes, over the 100-byte limit for a task)" in _error("bigbench:mood")
    assert "(over the 100-byte limit for a task)" in _error("bigbench:qa")
    assert _cached_files() == []


def test_every_source_is_named_when_all_fail():
    url = bigbench._task_url(__import__("os").environ["PROMPTGYM_BIGBENCH_URL"], "multiemo/all_sentence_en/task.json")
    message = _error("bigbench:multiemo/all_sentence_en")
    assert message == ("bigbench:multiemo/all_sentence_en: could not be loaded from any source: "
                       f"cache ({_tasks_dir()}: not there); "
                       "sdist (none on this machine; PROMPTGYM_BIGBENCH_SDIST=FILE names one); "
                       f"raw URL {url} (connection refused); "
                       "sdist via pip (No matching distribution found for bigbench==1.0.0)")
    assert sorted(p.name for p in bigbench.downloads_dir().iterdir()) == []  # nothing half-made left


def test_no_download_makes_no_request_and_says_so(serve):
    from promptgym.data.bigbench import no_download

    server = serve({"mood/task.json": _json(MOOD)})
    with no_download():
        message = _error("bigbench:mood")
    assert message == (f"bigbench:mood: not on this machine (downloads are off here): cache ({_tasks_dir()}: not there); "
                       "sdist (none on this machine; PROMPTGYM_BIGBENCH_SDIST=FILE names one)")
    assert not server.hits
    load_dataset("bigbench:mood")
    with no_download():
        assert len(load_dataset("bigbench:mood")) == 3  # the cache is this machine's
    assert server.hits == {"mood/task.json": 1}


def test_bad_settings_are_one_line_errors(monkeypatch):
    monkeypatch.setenv("PROMPTGYM_BIGBENCH_URL", "ftp://mirror/tasks")
    assert _error("bigbench:mood") == "PROMPTGYM_BIGBENCH_URL=ftp://mirror/tasks: expected an http:// or https:// URL"
    monkeypatch.setenv("PROMPTGYM_BIGBENCH_URL", "http://user:hunter22@mirror/tasks")
    monkeypatch.setenv("PROMPTGYM_BIGBENCH_TIMEOUT", "soon")
    assert _error("bigbench:mood") == "PROMPTGYM_BIGBENCH_TIMEOUT=soon: expected seconds, a number above 0"


def test_a_key_in_the_base_url_is_not_printed(monkeypatch):
    monkeypatch.setenv("PROMPTGYM_BIGBENCH_URL", f"http://127.0.0.1:{_closed_port()}/tasks?token=hunter22")
    message = _error("bigbench:mood")
    assert "hunter22" not in message and "/tasks/mood/task.json?token=***" in message


def test_default_url_is_the_repositorys_raw_files():
    assert bigbench.RAW_URL == "https://raw.githubusercontent.com/google/BIG-bench/main/bigbench/benchmark_tasks"
    assert bigbench._task_url(bigbench.RAW_URL + "/", "multiemo/all_sentence_en/task.json") == (
        "https://raw.githubusercontent.com/google/BIG-bench/main/bigbench/benchmark_tasks/multiemo/all_sentence_en/task.json")


# What pip printed in a venv from `python3 -m venv` for the old `--no-build-isolation` command.
OLD_FAILURE = """  error: subprocess-exited-with-error

  × Preparing metadata (pyproject.toml) did not run successfully.
  │ exit code: 1
  ╰─> [3 lines of output]
      running dist_info
      creating '/tmp/pip-modern-metadata-x/bigbench-1.0.0.dist-info'
      error: invalid command 'bdist_wheel'
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
error: metadata-generation-failed

× Encountered error while generating package metadata.
╰─> See above for output.

note: This is an issue with the package mentioned above, not pip.
hint: See above for details.
"""


def test_pip_error_finds_the_reason_not_see_above():
    from promptgym.data.bigbench import pip_error

    assert pip_error(OLD_FAILURE) == "error: invalid command 'bdist_wheel'"
    offline = ("WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError'\n"
               "ERROR: Could not find a version that satisfies the requirement bigbench==1.0.0\n"
               "ERROR: No matching distribution found for bigbench==1.0.0\n")
    assert pip_error(offline).startswith("No matching distribution found for bigbench==1.0.0 (the index did not answer:")
    assert pip_error("") == "pip failed with no output"
