"""How a served model scores a choice task when ``--scoring`` is not given
(``promptgym.runner.served_scoring``), against the loopback fake OpenAI server (real HTTP on
127.0.0.1): the automatic choice, what reaches the ledger and the cache, options that share a first
token, and a resumed run that decides as before without asking again."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("openai")

from promptgym import api  # noqa: E402
from promptgym.paths import default_store_url  # noqa: E402
from promptgym.runner.served_scoring import GENERATE, SCORED  # noqa: E402
from promptgym.store.runs import RunStore  # noqa: E402

from integration.fake_openai_server import FakeOpenAIServer  # noqa: E402
from support import SENTIMENT, sentiment_reply, write_sentiment  # noqa: E402


def knows_the_answer(body: dict) -> list[tuple[str, float]]:
    """A served model whose first answer token is likeliest the right label."""
    text = json.dumps(body["messages"])
    truth = next((y for t, y in SENTIMENT if t in text), "positive")
    other = "negative" if truth == "positive" else "positive"
    return [(truth, math.log(0.6)), ("This", math.log(0.2)), (other, math.log(0.1))]


def optimize(data: Path, spec: str, **kw):
    return api.optimize(str(data), method="ape", budget=20, train_size=6, test_size=4, select_k=0,
                        task_model=spec, optimizer_model=spec, quiet=True, **kw)


def replayed(run_id: str) -> api.RunResult:
    """The run again, as a resume after a kill replays it (its answers are in the cache)."""
    RunStore(default_store_url()).set_status(run_id, "interrupted")
    return api.resume(run_id, quiet=True)


def test_a_served_model_with_log_probs_has_its_choices_scored_by_them(tmp_path):
    with FakeOpenAIServer(reply=sentiment_reply, alternatives=knows_the_answer) as server:
        result = optimize(write_sentiment(tmp_path), f"openai:fake-model@{server.base_url}")
        asked = [r for r in server.received if r.body.get("logprobs")]
        before = len(server.received)
        again = replayed(result.run_id)
        sent_again = len(server.received) - before
    summary = result.summary
    assert summary.stats["scoring"] == SCORED
    assert summary.initial_prompt_full["layout"]["name"] == "chat"  # no options line: scored, not generated
    assert summary.test_initial == 1.0 and all(r.body["max_tokens"] == 1 for r in asked)
    store = RunStore(default_store_url())
    rows = [r for r in store.call_rows(result.run_id) if r["role"] == "task"]
    assert {r["kind"] for r in rows} == {"score"}
    check = rows[0]  # the start's first training example, charged to the budget ...
    assert (check["charged"], check["cached"]) == (True, False)
    assert any(r["key"] == check["key"] and r["cached"] for r in rows[1:])  # ... found in the cache by the search
    assert summary.budget_used == sum(r["charged"] for r in store.call_rows(result.run_id))
    assert len(asked) == sum(not r["cached"] for r in rows)  # every request is a ledger row
    test_rows = [s for s in store.scores(result.run_id) if s["split"] == "test"]
    assert test_rows and all(s["probability"] and None not in s["probability"].values() for s in test_rows)
    assert json.loads(api.export(result.run_id, "json"))["template"]["scoring"] == "logprob"
    assert sent_again == 0 and again.summary.stats["scoring"] == summary.stats["scoring"]  # decided from the cache


def test_options_that_begin_with_one_token_are_answered_by_generation(tmp_path):
    data = tmp_path / "amb.jsonl"
    data.write_text("".join(json.dumps({"input": f"Review {i}: it was {'odd' if i % 2 else 'unclear'}.",
                                        "target": ("ambivalent", "ambiguous")[i % 2],
                                        "choices": ["ambivalent", "ambiguous"]}) + "\n" for i in range(16)))

    def reply(body: dict) -> str:
        text = json.dumps(body["messages"])
        return "Decide whether the review is ambivalent or ambiguous." if "instruction" in text.lower() else \
            "ambivalent"

    with FakeOpenAIServer(reply=reply, alternatives=[("amb", math.log(0.6)), ("This", math.log(0.3))]) as server:
        result = optimize(data, f"openai:fake-model@{server.base_url}")
    summary = result.summary
    assert "options 'ambivalent' and 'ambiguous' begin with the same token" in summary.stats["scoring"]
    assert summary.stats["scoring"].endswith(GENERATE)
    assert summary.initial_prompt_full["layout"]["name"] == "chat-options"
    kinds = [r["kind"] for r in RunStore(default_store_url()).call_rows(result.run_id) if r["role"] == "task"]
    assert kinds[0] == "score" and set(kinds[1:]) == {"generate"}  # asked once, then generated
    assert json.loads(api.export(result.run_id, "json"))["template"]["scoring"] == "generate"


def test_a_resumed_run_without_log_probs_does_not_ask_again(tmp_path):
    with FakeOpenAIServer(reply=sentiment_reply) as server:  # no log-probabilities
        result = optimize(write_sentiment(tmp_path), f"openai:fake-model@{server.base_url}")
        before = len(server.received)
        again = replayed(result.run_id)
        asked_again = [r for r in server.received[before:] if r.body.get("logprobs")]
    assert "returns no log-probabilities" in result.summary.stats["scoring"]
    assert asked_again == []  # its ledger holds the failed call that asked
    assert again.summary.stats["scoring"].startswith("the served model gave no usable log-probabilities when this run")
    assert again.summary.test_initial == result.summary.test_initial


def test_a_served_model_with_log_probs_calibrates_its_first_token_scores(tmp_path):
    with FakeOpenAIServer(reply=sentiment_reply, alternatives=knows_the_answer) as server:
        result = optimize(write_sentiment(tmp_path), f"openai:fake-model@{server.base_url}", calibrate=True)
    summary = result.summary
    assert summary.stats["scoring"] == SCORED
    # a content-free input names no review: the fake answers "positive" 0.6 / "negative" 0.1, renormalised
    assert summary.calibration["prior_initial"] == pytest.approx({"positive": 6 / 7, "negative": 1 / 7})
    assert sum(r["role"] == "calibration" for r in RunStore(default_store_url()).call_rows(result.run_id)) >= 3


def test_a_served_model_without_log_probs_cannot_calibrate(tmp_path):
    from promptgym.errors import PromptgymError

    with FakeOpenAIServer(reply=sentiment_reply) as server, \
            pytest.raises(PromptgymError, match="^--calibrate needs choices scored by log-probability: .*returns no "
                                                "log-probabilities"):
        optimize(write_sentiment(tmp_path), f"openai:fake-model@{server.base_url}", calibrate=True)
