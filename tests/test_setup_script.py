"""scripts/setup.sh fails when pip fails (it used to end in `|| true` and hide a failed install)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BROKEN = '[build-system]\nrequires = []\nbuild-backend = "no_such_backend"\n\n[project]\nname = "broken"\nversion = "0"\n'


def test_setup_fails_loudly_when_pip_fails(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    (tmp_path / "pyproject.toml").write_text(BROKEN)  # pip cannot build this project
    proc = subprocess.run(["bash", str(tmp_path / "scripts" / "setup.sh")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert "no_such_backend" in proc.stdout + proc.stderr  # pip's own reason reaches the user
