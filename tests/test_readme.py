"""The README's commands are the ones scripts/readme_smoke.sh runs (so neither drifts), and its
test command is the one CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands(text: str) -> list[str]:
    """Shell commands, continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(re.sub(r"\s+", " ", line))
    return out


def readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.S)
    return [c.replace("RUN_ID", '"$RUN_ID"') for block in blocks for c in _commands(block)]


def test_every_readme_command_is_run_by_the_smoke_script():
    smoke = _commands((ROOT / "scripts" / "readme_smoke.sh").read_text())
    smoke = [re.sub(r"^step ", "", c) for c in smoke]
    commands = readme_commands()
    assert len(commands) >= 8
    missing = [c for c in commands if not any(c in s for s in smoke)]
    assert missing == []


def test_readme_test_command_is_what_ci_runs():
    assert "bash scripts/test.sh" in readme_commands()
    assert "bash scripts/test.sh" in _commands((ROOT / ".ci" / "run").read_text())


def test_marked_docs_examples_are_found_and_the_smoke_script_runs_them():
    """A block marked ``<!-- smoke -->`` is picked up with its line; the smoke script calls the runner."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_examples", ROOT / "scripts" / "docs_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = "intro\n<!-- smoke -->\n```sh\necho hi\n```\n\n```sh\nnot marked\n```\n"
    found = [(m.group(1), m.group(2)) for m in module.MARKED.finditer(text)]
    assert found == [("sh", "echo hi\n")]
    assert "scripts/docs_examples.py" in (ROOT / "scripts" / "readme_smoke.sh").read_text()
