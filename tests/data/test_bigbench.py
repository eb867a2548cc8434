"""BIG-bench loader on a tiny sdist of the same layout (the real one is 358 MB)."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from promptgym.data.loaders import load_dataset
from promptgym.errors import DataError

PREFIX = "bigbench-1.0.0/bigbench/benchmark_tasks/"


def _add(tar: tarfile.TarFile, name: str, data: dict) -> None:
    blob = json.dumps(data).encode()
    info = tarfile.TarInfo(PREFIX + name)
    info.size = len(blob)
    tar.addfile(info, io.BytesIO(blob))


@pytest.fixture
def sdist(tmp_path, monkeypatch):
    path = tmp_path / "bigbench-1.0.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "mood/task.json", {
            "task_prefix": "Say how the writer feels.", "description": "meta text",
            "examples": [{"input": "I love it", "target_scores": {"sad": 0, "happy": 1}},
                         {"input": "I hate it", "target_scores": {"sad": 1, "happy": 0}},
                         {"input": "", "target_scores": {"sad": 1, "happy": 0}}]})
        _add(tar, "qa/task.json", {"description": "Answer.", "examples": [
            {"input": "2+2?", "target": ["4", "four"]}, {"input": "Capital of France?", "target": "Paris"}]})
        _add(tar, "multi/task.json", {"name": "multi", "description": "Parent."})
        _add(tar, "multi/a/task.json", {"task_prefix": "Pick one.", "examples": [
            {"input": "x", "target_scores": {"yes": 1, "no": 0}}]})
        _add(tar, "multi/b/task.json", {"examples": [{"input": "y", "target_scores": {"yes": 0, "no": 1}}]})
        _add(tar, "broken/task.json", {"examples": [{"input": "z"}]})
    monkeypatch.setenv("PROMPTGYM_BIGBENCH_SDIST", str(path))
    return path


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


def test_bad_names_and_rows_are_one_line_errors(sdist):
    with pytest.raises(DataError, match=r"^bigbench:nope: no such BIG-bench task$"):
        load_dataset("bigbench:nope")
    with pytest.raises(DataError, match=r"bigbench:broken: example 0: needs 'target_scores' or 'target'"):
        load_dataset("bigbench:broken")
    with pytest.raises(DataError, match="give a task name"):
        load_dataset("bigbench:")


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
