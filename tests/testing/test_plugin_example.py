"""A method in a package of its own (tests/plugin_example), installed as a user would install it:
pip puts it into a throwaway directory, and then, in fresh processes that see that directory, the
public conformance suite passes from the package's own tests and the CLI runs it by name (on the
scripted model, a deterministic stand-in, not a language model)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import promptgym
from promptgym.testing import MethodConformance

EXAMPLE = Path(__file__).resolve().parents[1] / "plugin_example"
SOURCE = Path(promptgym.__file__).resolve().parents[1]  # the promptgym under test


def suite_size() -> int:
    """The tests MethodConformance makes of one method: each test once per parameter set."""
    size = 0
    for name, test in vars(MethodConformance).items():
        if name.startswith("test_"):
            sets = [len(mark.args[1]) for mark in getattr(test, "pytestmark", []) if mark.name == "parametrize"]
            size += math.prod(sets)
    return size


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(a copy of the example package, the environment of a process that has it installed)."""
    root = tmp_path_factory.mktemp("plugin")
    package, target = root / "package", root / "site"
    shutil.copytree(EXAMPLE, package)  # the build writes into its source folder: not into the repository
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "--target", str(target), str(package)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(target.glob("promptgym_example_method-*.dist-info/entry_points.txt"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), str(SOURCE)]),
               PROMPTGYM_HOME=str(root / "home"))
    return package, env


def test_the_public_suite_passes_from_the_package_itself(installed, tmp_path):
    package, env = installed
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:]
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    # every check of the suite ran (none skipped or deselected), plus the entry-point test
    assert summary.startswith(f"{suite_size() + 1} passed") and "skipped" not in summary, summary


def test_the_cli_lists_and_runs_it(installed, tmp_path):
    _, env = installed
    cli = [sys.executable, "-m", "promptgym.cli"]
    listed = subprocess.run(cli + ["methods"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[:1] == ["example-rewrite"] for line in listed.stdout.splitlines()), listed.stdout
    done = subprocess.run(cli + ["optimize", "--dataset", "example:sentiment", "--method", "example-rewrite",
                                 "--budget", "60", "--train-size", "6", "--test-size", "6", "--dev-size", "0",
                                 "--task-model", "scripted", "--optimizer-model", "scripted", "--param", "rounds=2",
                                 "--json", "--quiet"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["method"] == "example-rewrite"
    assert summary["stats"]["stopped_by"] == "done" and summary["stats"]["steps"] == 2
    assert summary["candidates"] > 1  # its rewrites were recorded beside the start
