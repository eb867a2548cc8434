"""The package's layers hold (``[tool.importlinter]`` in pyproject.toml): every import points down,
from cli through bench, api, report/envs/export, runner, projection, optimizers, evaluation, tasks,
models/store and data to the low modules, and no modules import each other in a cycle at any depth."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(src: Path, cwd: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with this checkout's contracts on the package under ``src``."""
    exe = Path(sys.executable).parent / "lint-imports"
    assert exe.exists(), "import-linter is not installed: pip install -e '.[dev]'"
    return subprocess.run([str(exe), "--no-cache", str(ROOT / "pyproject.toml")], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(src)}, timeout=300)


def test_imports_point_down_only_and_form_no_cycle():
    proc = _lint_imports(ROOT / "src", ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "2 kept, 0 broken" in proc.stdout


def test_the_check_fails_on_an_upward_import(tmp_path):
    """The same contracts on a copy of the package with one import pointing up must break."""
    shutil.copytree(ROOT / "src" / "promptgym", tmp_path / "promptgym", ignore=shutil.ignore_patterns("__pycache__"))
    with (tmp_path / "promptgym" / "data" / "dataset.py").open("a") as module:
        module.write("\nimport promptgym.runner  # noqa: E402,F401\n")
    proc = _lint_imports(tmp_path, tmp_path)
    assert proc.returncode != 0
    assert "promptgym.data is not allowed to import promptgym.runner" in proc.stdout
