"""Issue 27, item 9: statements in the README and docs that behaviour can check, tied to it."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from click.testing import CliRunner

from promptgym.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SCRIPTED = ["--task-model", "scripted", "--optimizer-model", "scripted"]


def _minutes(text: str) -> int:
    (found,) = re.findall(r"[Aa]bout (\d+) minutes", text)
    return int(found)


def test_readme_smoke_time_is_the_scripts_own():
    script = (ROOT / "scripts" / "readme_smoke.sh").read_text()
    header = "\n".join(line for line in script.splitlines() if line.startswith("#"))
    paragraph = next(p for p in README.split("\n\n") if "bash scripts/readme_smoke.sh" in p)
    assert _minutes(paragraph) == _minutes(header)


def test_budget_help_says_the_search_and_final_selection():
    for command in (["optimize"], ["bench"], ["resume"]):
        params = {p.name: p for p in main.commands[command[0]].params}
        if "budget" not in params:
            continue
        text = params["budget"].help.lower()
        assert "search" in text and "selection" in text and "during the search" not in text, command
    cli_doc = (ROOT / "docs" / "cli.md").read_text()
    assert "during the search" not in cli_doc


def test_budget_used_is_the_search_and_final_selection_as_the_readme_says(tmp_path):
    row = next(line for line in README.splitlines() if line.startswith("| `budget`, `budget_used` |"))
    assert "final selection" in row and "what the search spent" not in row
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"input": f"Review {i}: it was {['good', 'bad'][i % 2]}.",
                                        "target": ["good", "bad"][i % 2]}) + "\n" for i in range(60)))
    result = CliRunner().invoke(main, ["optimize", "--dataset", str(data), *SCRIPTED, "--budget", "80",
                                       "--train-size", "6", "--dev-size", "10", "--test-size", "10", "--json",
                                       "--quiet"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    from promptgym.paths import default_store_url
    from promptgym.store.runs import RunStore

    store, run_id = RunStore(default_store_url()), summary["run_id"]
    search, select = store.charged_calls(run_id, "search"), store.charged_calls(run_id, "select")
    assert search > 0 and select > 0  # final selection ran and drew on the budget
    assert summary["budget_used"] == search + select <= 80


def test_backends_doc_names_the_server_extra_and_the_layout_that_generation_needs():
    from promptgym.export import generation_prompt
    from promptgym.tasks.prompt import LAYOUTS, Prompt

    backends = (ROOT / "docs" / "backends.md").read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any("llama-cpp-python[server]" in d for d in extras["server"])
    assert "promptgym[server]" in backends
    # the layout that lists the options: the one a generated choice needs (as export builds it)
    listing = generation_prompt(Prompt("Say.", layout=LAYOUTS["chat"])).layout.name
    assert listing == "chat-options" and f"--layout {listing}" in backends


def test_the_readme_says_what_every_extra_adds():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| extra | what it adds |"):].split("\n\n")[0]
    rows = re.findall(r"^\| `([\w-]+)` \| (.+) \|$", table, flags=re.M)
    names = [name for name, _ in rows]
    assert sorted(names) == sorted(extras) and len(set(names)) == len(names), "one row per extra in pyproject"
    assert all(len(what) > 20 for _, what in rows)
