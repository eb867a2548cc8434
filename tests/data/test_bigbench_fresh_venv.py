"""The BIG-bench sdist fetched with pip, in a venv made exactly as scripts/setup.sh makes it
(``python3 -m venv``).

pip is the last source of a task, after the cache, an sdist on this machine and the raw URL; the
public index no longer serves bigbench 1.0.0, so this path matters where a private index or mirror
does. The raw URL points at a closed loopback port here, so that a load reaches pip.

The real sdist is 358 MB, so pip is pointed (through its environment, not our command line) at a
folder holding a tiny sdist of the same layout: a setup.py-only package, so pip prepares its
metadata with setuptools and wheel as it does for the real one, plus those two build requirements
(fetched once from the configured index). A venv from ``python3 -m venv`` has no ``wheel``: with
``--no-build-isolation`` this failed with "invalid command 'bdist_wheel'".
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from promptgym.data import bigbench
from promptgym.data.loaders import load_dataset
from promptgym.errors import DataError

pytestmark = pytest.mark.integration

SETUP_PY = b"from setuptools import setup\nsetup(name='bigbench', version='1.0.0', packages=[])\n"
PKG_INFO = b"Metadata-Version: 2.1\nName: bigbench\nVersion: 1.0.0\n"
TASK = {"task_prefix": "Say how the writer feels.",
        "examples": [{"input": "I love it", "target_scores": {"sad": 0, "happy": 1}},
                     {"input": "I hate it", "target_scores": {"sad": 1, "happy": 0}}]}


def _tiny_sdist(folder: Path) -> None:
    with tarfile.open(folder / bigbench.SDIST_NAME, "w:gz") as tar:
        for name, blob in [("setup.py", SETUP_PY), ("PKG-INFO", PKG_INFO),
                           ("bigbench/benchmark_tasks/mood/task.json", json.dumps(TASK).encode())]:
            info = tarfile.TarInfo(f"bigbench-1.0.0/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    """A venv made as setup.sh makes it; asserts it lacks ``wheel``, the condition of the bug."""
    root = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run(["python3", "-m", "venv", str(root)], check=True)
    python = root / "bin" / "python"
    has_wheel = subprocess.run([str(python), "-c", "import wheel"], capture_output=True).returncode == 0
    assert not has_wheel, "python3 -m venv now ships wheel: this test no longer reproduces a new user's venv"
    return python


@pytest.fixture(scope="module")
def links(tmp_path_factory) -> Path:
    """A find-links folder: the tiny sdist and the build requirements pip needs to read it."""
    folder = tmp_path_factory.mktemp("links")
    got = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:",
                          "setuptools", "wheel", "-d", str(folder)], capture_output=True, text=True)
    if got.returncode != 0:
        pytest.skip(f"the package index is not reachable for setuptools/wheel: {bigbench.pip_error(got.stderr)}")
    _tiny_sdist(folder)
    return folder


def _pip_from(monkeypatch, folder: Path) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    with socket.socket() as s:  # the raw URL refuses at once: the load goes on to pip
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("PROMPTGYM_BIGBENCH_URL", f"http://127.0.0.1:{s.getsockname()[1]}/tasks")


def test_readme_dataset_loads_through_pip_in_a_fresh_venv(fresh_venv, links, monkeypatch):
    _pip_from(monkeypatch, links)
    monkeypatch.delenv("PROMPTGYM_BIGBENCH_SDIST", raising=False)
    monkeypatch.setattr(sys, "executable", str(fresh_venv))  # the user's venv runs pip
    ds = load_dataset("bigbench:mood")
    assert [e.target for e in ds.examples] == ["happy", "sad"]
    downloads = bigbench.downloads_dir()
    assert sorted(p.name for p in downloads.iterdir()) == sorted([bigbench.SDIST_NAME, "bigbench-1.0.0-tasks"])


def test_a_failed_download_says_pips_reason_in_one_line(fresh_venv, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    _pip_from(monkeypatch, empty)
    with pytest.raises(DataError) as err:
        bigbench.download_sdist(tmp_path / "dl", python=str(fresh_venv))
    message = str(err.value)
    assert "\n" not in message
    assert message == ("bigbench: could not download the sdist with pip: "
                       "No matching distribution found for bigbench==1.0.0")
    assert list((tmp_path / "dl").iterdir()) == []  # no partial tarball, no scratch folder left
