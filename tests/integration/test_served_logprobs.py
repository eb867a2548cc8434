"""Choice tasks on a served model scored by the first answer token's log-probabilities (issue 25,
item 4), chosen by the run itself when ``--scoring`` is not given.

Part a: the loopback fake server (real HTTP): the automatic choice, what reaches the ledger and the
cache, options that share a first token, and a resumed run that decides as before. Fast.
Part b (``integration``): ``python -m llama_cpp.server`` on the embedded GGUF against the in-process
model on the same examples, the soft evidence of a served run, and a server without log-probabilities.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openai")

from promptgym import api  # noqa: E402
from promptgym.data.loaders import load_dataset  # noqa: E402
from promptgym.models.factory import make_backend  # noqa: E402
from promptgym.models.openai_backend import OpenAIBackend  # noqa: E402
from promptgym.paths import default_store_url  # noqa: E402
from promptgym.store.runs import RunStore  # noqa: E402
from promptgym.tasks.prompt import Prompt  # noqa: E402
from promptgym.tasks.task import ChoiceTask  # noqa: E402

from support import SENTIMENT, sentiment_reply, write_sentiment  # noqa: E402

try:  # tests/integration may or may not be a package
    from .fake_openai_server import FakeOpenAIServer
    from .llama_server import ALIAS, llama_cpp_server
except ImportError:
    from fake_openai_server import FakeOpenAIServer  # type: ignore[no-redef]
    from llama_server import ALIAS, llama_cpp_server  # type: ignore[no-redef]

SCORED = "options scored by the log-probabilities of the served model's first answer token"
GENERATED = "choices are answered by generation and matched to an option"


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


# -- a. the loopback fake server ------------------------------------------------------------------

def test_a_served_model_with_log_probs_has_its_choices_scored_by_them(tmp_path):
    with FakeOpenAIServer(reply=sentiment_reply, alternatives=knows_the_answer) as server:
        result = optimize(write_sentiment(tmp_path), f"openai:fake-model@{server.base_url}")
        asked = [r for r in server.received if r.body.get("logprobs")]
        before = len(server.received)
        again = replayed(result.run_id)
        sent_again = len(server.received) - before
    summary = result.summary
    assert summary.stats["scoring"].startswith(SCORED)
    assert summary.initial_prompt_full["layout"]["name"] == "chat"  # no options line: scored, not generated
    assert summary.test_initial == 1.0 and all(r.body["max_tokens"] == 1 for r in asked)
    store = RunStore(default_store_url())
    rows = [r for r in store.call_rows(result.run_id) if r["role"] == "task"]
    assert {r["kind"] for r in rows} == {"score"}
    check = rows[0]  # the start's first training example, not charged ...
    assert (check["charged"], check["cached"]) == (False, False)
    assert any(r["key"] == check["key"] and r["cached"] for r in rows[1:])  # ... found in the cache by the search
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
    assert summary.stats["scoring"].endswith(GENERATED)
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


# -- b. the real model behind the protocol: llama_cpp.server on the embedded GGUF -----------------

EXAMPLES = 20


@pytest.fixture(scope="module")
def llama_server():
    with llama_cpp_server() as base:
        yield base


@pytest.mark.integration
def test_served_first_token_scores_pick_the_options_the_in_process_model_picks(llama_server):
    """Scored over HTTP from the first answer token's top 1000 alternatives and in-process from the
    logits (every token of every option), on the first 20 examples of example:sentiment with its
    own instruction: the same option for most examples, similar accuracy, and where an option is
    one token the server listed, the in-process log-probability plus at most that of its
    leading-space variant (" negative", which the served score adds)."""
    dataset = load_dataset("example:sentiment")
    examples = dataset.examples[:EXAMPLES]
    task = ChoiceTask()
    prompt = Prompt(dataset.description)
    requests = [task.request(prompt, e) for e in examples]
    served = collect(OpenAIBackend(ALIAS, base_url=llama_server, max_concurrency=1), requests)
    local_backend = make_backend("embedded")
    local = collect(local_backend, requests)
    picked = [[task.predict(prompt, e, s) for e, s in zip(examples, scores)] for scores in (served, local)]
    agreement = np.mean([a == b for a, b in zip(*picked)])
    accuracy = [np.mean([p == e.target for p, e in zip(picks, examples)]) for picks in picked]
    print(f"\nserved vs in-process on {EXAMPLES} examples: agreement {agreement:.2f}, "
          f"accuracy served {accuracy[0]:.2f}, in-process {accuracy[1]:.2f}")
    assert agreement >= 0.8
    assert abs(accuracy[0] - accuracy[1]) <= 0.1
    compared = 0
    for example, remote, here in zip(examples, served, local):
        for k, option in enumerate(example.choices):
            if remote.token_counts[k] and len(local_backend.tokenize(option, add_bos=False, special=False)) == 1:
                assert here.logprobs[k] - 0.05 <= remote.logprobs[k] <= here.logprobs[k] + math.log(2), \
                    (example.id, option, remote.logprobs[k], here.logprobs[k])
                compared += 1
    assert compared >= EXAMPLES  # at least one option per example on average was listed and compared


def collect(backend, requests) -> list:
    results: list = [None] * len(requests)
    backend.score(requests, lambda i, r: results.__setitem__(i, r))
    return results


@pytest.mark.integration
def test_a_served_run_scores_by_log_probability_and_keeps_the_evidence(llama_server):
    result = api.optimize("example:sentiment", method="ape", budget=8, train_size=4, test_size=4, select_k=0,
                          task_model=f"openai:{ALIAS}@{llama_server}", optimizer_model="scripted", quiet=True)
    summary = result.summary
    assert summary.stats["scoring"].startswith(SCORED)
    store = RunStore(default_store_url())
    assert {r["kind"] for r in store.call_rows(result.run_id) if r["role"] == "task"} == {"score"}
    held_out = [s for s in store.scores(result.run_id) if s["split"] == "test"]
    assert held_out and all(len(s["probability"]) == 4 and len(s["margin"]) == 4 for s in held_out)
    assert all(0.0 < p < 1.0 for s in held_out for p in s["probability"].values())


@pytest.mark.integration
def test_a_server_that_refuses_log_probs_is_answered_by_generation_with_a_note(capsys):
    with llama_cpp_server(logits_all=False) as base:  # answers 500 to a request for log-probabilities
        result = api.optimize("example:sentiment", method="ape", budget=8, train_size=4, test_size=4,
                              select_k=0, task_model=f"openai:{ALIAS}@{base}", optimizer_model="scripted")
    note = result.summary.stats["scoring"]
    assert "refuses log-probabilities" in note and "HTTP 500" in note and note.endswith(GENERATED)
    logged = [line for line in capsys.readouterr().err.splitlines() if line.startswith("scoring: ")]
    assert logged == [f"scoring: {note}"]
    kinds = [r["kind"] for r in RunStore(default_store_url()).call_rows(result.run_id) if r["role"] == "task"]
    assert kinds[0] == "score" and set(kinds[1:]) == {"generate"}
