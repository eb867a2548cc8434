"""A choice task answered by generation over HTTP (a served model without log-probabilities, found by
one check at run start): the prompt shows the options, and a model whose answers name no option stops the run before the search
with one line (issue 27, item 1). Against the loopback fake server: fast, always run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("openai")

from click.testing import CliRunner  # noqa: E402

from promptgym import api  # noqa: E402
from promptgym.cli import main  # noqa: E402
from promptgym.errors import PromptgymError  # noqa: E402
from promptgym.store.runs import RunStore  # noqa: E402

try:  # tests/integration may or may not be a package
    from .fake_openai_server import FakeOpenAIServer
except ImportError:
    from fake_openai_server import FakeOpenAIServer  # type: ignore[no-redef]

ROWS = [(f"Review {i}: {'great, loved it' if i % 3 == 0 else 'awful' if i % 3 == 1 else 'it was fine'}.",
         ("positive", "negative", "neutral")[i % 3]) for i in range(30)]


def _data(tmp_path: Path) -> Path:
    path = tmp_path / "three.jsonl"
    path.write_text("".join(json.dumps({"input": x, "target": y}) + "\n" for x, y in ROWS))
    return path


def _task_prompts(server: FakeOpenAIServer) -> list[str]:
    """What the task model was asked (its answers are short: 16 tokens at most; a meta-prompt's are long)."""
    return [r.body["messages"][-1]["content"] for r in server.received if r.path.endswith("/chat/completions")
            and (r.body.get("max_tokens") or r.body.get("max_completion_tokens")) == 16]


def _label(body: dict) -> str:
    """An obedient model: the label that the review's words give."""
    text = body["messages"][-1]["content"]
    if "Answer with one of" not in " ".join(m["content"] for m in body["messages"]):
        return "This review expresses an opinion about the product."
    return "positive" if "great" in text else "negative" if "awful" in text else "neutral"


def test_generated_choices_show_the_options_and_score(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTGYM_HOME", str(tmp_path / "home"))
    with FakeOpenAIServer(reply=_label) as server:
        spec = f"openai:fake-model@{server.base_url}"
        result = api.optimize(str(_data(tmp_path)), method="ape", budget=20, train_size=6, test_size=6,
                              task_model=spec, optimizer_model=spec, select_k=0, quiet=True)
        task_prompts = _task_prompts(server)
    assert task_prompts and all("Answer with one of: positive, negative, neutral." in t for t in task_prompts)
    summary = result.summary
    assert summary.initial_prompt_full["layout"]["name"] == "chat-options"  # visible in the summary / export
    assert summary.test_initial == 1.0 and summary.initial_score == 1.0
    assert summary.stats["answer_check"] == dict(examples=6, matched=6, share=1.0, layout="chat-options")
    made = [r for r in RunStore(api.default_store_url()).call_rows(result.run_id) if not r["cached"]]
    assert [r["kind"] for r in made[:7]] == ["score"] + ["generate"] * 6  # the ask, then the answer check ...
    assert all(r["charged"] for r in made[:7])  # ... both charged: nothing before the test escapes the budget
    assert summary.budget_used <= 20
    # the server was asked whether it gives log-probabilities (it gives none), and the run says so
    assert "/chat/completions returns no log-probabilities" in summary.stats["scoring"]
    assert summary.stats["scoring"].endswith("choices are answered by generation and matched to an option")


def test_free_text_answers_stop_the_run_before_the_search(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTGYM_HOME", str(tmp_path / "home"))
    with FakeOpenAIServer(reply="I think this text is about a product review.") as server:
        spec = f"openai:fake-model@{server.base_url}"
        result = CliRunner().invoke(main, ["optimize", "--dataset", str(_data(tmp_path)), "--method", "ape",
                                           "--budget", "40", "--train-size", "12", "--test-size", "6",
                                           "--task-model", spec, "--optimizer-model", spec, "--quiet"])
        received = list(server.received)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("promptgym: error: ")
    assert "name an option in 0 of the first 10 training examples" in lines[0]
    assert "layout chat-options" in lines[0] and "product review" in lines[0]
    checks = [r for r in received if r.body.get("logprobs")]
    assert len(checks) == 1 and checks[0].body["max_tokens"] == 1  # does it score by log-probability? no
    assert len(received) == 11  # that, and the start on 10 training examples, nothing of the search


def test_api_raises_on_free_text_answers(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTGYM_HOME", str(tmp_path / "home"))
    with FakeOpenAIServer(reply="Sure! Here is my analysis.") as server:
        spec = f"openai:fake-model@{server.base_url}"
        with pytest.raises(PromptgymError, match="search would score every prompt about 0"):
            api.optimize(str(_data(tmp_path)), method="opro", budget=30, train_size=8, test_size=4,
                         task_model=spec, optimizer_model=spec, quiet=True)
