"""Choice tasks on a served model scored by the first answer token's log-probabilities (issue 25,
item 4), against ``python -m llama_cpp.server`` on the embedded GGUF: the in-process model's picks
on the same examples, the soft evidence of a served run, and a server without log-probabilities.
(The automatic choice against the loopback fake server: ``tests/runner/test_served_scoring.py``.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("openai")

from promptgym import api  # noqa: E402
from promptgym.data.loaders import load_dataset  # noqa: E402
from promptgym.models.factory import make_backend  # noqa: E402
from promptgym.models.openai_backend import OpenAIBackend  # noqa: E402
from promptgym.paths import default_store_url  # noqa: E402
from promptgym.store.runs import RunStore  # noqa: E402
from promptgym.runner.served_scoring import GENERATE, SCORED  # noqa: E402
from promptgym.tasks.prompt import Prompt  # noqa: E402
from promptgym.tasks.task import ChoiceTask  # noqa: E402

try:  # tests/integration may or may not be a package
    from .llama_server import ALIAS, llama_cpp_server
except ImportError:
    from llama_server import ALIAS, llama_cpp_server  # type: ignore[no-redef]

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
    assert summary.stats["scoring"] == SCORED
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
    assert "refuses log-probabilities" in note and "HTTP 500" in note and note.endswith(GENERATE)
    logged = [line for line in capsys.readouterr().err.splitlines() if line.startswith("scoring: ")]
    assert logged == [f"scoring: {note}"]
    kinds = [r["kind"] for r in RunStore(default_store_url()).call_rows(result.run_id) if r["role"] == "task"]
    assert kinds[0] == "score" and set(kinds[1:]) == {"generate"}
