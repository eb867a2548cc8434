"""The OpenAI-compatible backend against real HTTP servers on 127.0.0.1 (no mocked HTTP).

Part a: our own stdlib protocol server (``fake_openai_server``): retries, concurrency, what reaches
the wire, one-line errors through the API and the CLI. Fast, always run.
Part b (``integration``): the real model behind the protocol, ``python -m llama_cpp.server`` on the
embedded GGUF: generation and one tiny end-to-end ``promptgym optimize`` over HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("openai")

from click.testing import CliRunner  # noqa: E402

from promptgym import api  # noqa: E402
from promptgym.cli import main  # noqa: E402
from promptgym.errors import PromptgymError  # noqa: E402
from promptgym.models.base import EmbeddingRequest, GenerationRequest, ScoreRequest  # noqa: E402
from promptgym.models.openai_backend import OpenAIBackend  # noqa: E402

try:  # tests/integration may or may not be a package
    from .fake_openai_server import FakeOpenAIServer, fake_logprob, fake_tokens, fake_vector
    from .llama_server import free_port, llama_cpp_server
except ImportError:
    from fake_openai_server import (FakeOpenAIServer, fake_logprob, fake_tokens,  # type: ignore[no-redef]
                                    fake_vector)
    from llama_server import free_port, llama_cpp_server  # type: ignore[no-redef]

SENTIMENT = [
    ("An absolute delight from start to finish.", "positive"),
    ("I loved every minute of it.", "positive"),
    ("The staff were warm and helpful.", "positive"),
    ("Best purchase I have made this year.", "positive"),
    ("Fresh, tasty and fairly priced.", "positive"),
    ("It works perfectly and looks great.", "positive"),
    ("A wonderful, moving story.", "positive"),
    ("I would happily come back again.", "positive"),
    ("It broke after two days.", "negative"),
    ("The worst service I have ever had.", "negative"),
    ("Cold food and a rude waiter.", "negative"),
    ("A boring, pointless film.", "negative"),
    ("I want my money back.", "negative"),
    ("The screen cracked on the first drop.", "negative"),
    ("Slow, noisy and overpriced.", "negative"),
    ("Never buying from them again.", "negative"),
]


def chat(text: str, **kw) -> GenerationRequest:
    return GenerationRequest(messages=(("user", text),), **kw)


def collect(backend: OpenAIBackend, requests, kind: str = "generate") -> tuple[list, list[int]]:
    results: list = [None] * len(requests)
    calls: list[int] = []

    def on_result(i: int, r) -> None:
        calls.append(i)
        results[i] = r

    getattr(backend, kind)(requests, on_result)
    return results, calls


@pytest.fixture
def fake():
    with FakeOpenAIServer() as server:
        yield server


# -- a. our own protocol server -------------------------------------------------------------------

def test_generation_reaches_the_wire_and_on_result_once_per_request(fake):
    backend = OpenAIBackend("fake-model", base_url=fake.base_url)
    requests = [chat(f"Review {i}", max_tokens=5, temperature=0.7, stop=("\n", "END")) for i in range(5)]
    requests.append(GenerationRequest(text="Review: great\nLabel:", answer_prefix=" ", max_tokens=3))
    results, calls = collect(backend, requests)
    assert sorted(calls) == list(range(6))
    assert [r.text for r in results] == ["positive"] * 6
    assert all(r.prompt_tokens == 7 and r.completion_tokens == 1 for r in results)
    chats = fake.requests_to("/chat/completions")
    assert len(chats) == 5 and len(fake.requests_to("/v1/completions")) == 1
    first = next(r.body for r in chats if r.body["messages"][0]["content"] == "Review 3")
    assert first["messages"] == [{"role": "user", "content": "Review 3"}]
    assert (first["max_tokens"], first["temperature"], first["stop"], first["model"]) == (5, 0.7, ["\n", "END"], "fake-model")
    raw = fake.requests_to("/v1/completions")[0].body
    assert raw["prompt"] == "Review: great\nLabel: " and raw["max_tokens"] == 3 and raw["temperature"] == 0.0
    assert "stop" not in raw
    # The seed is derived from the request: the same request always sends the same seed.
    assert len({r.body["seed"] for r in chats}) == 5


def test_answer_prefix_is_cued_in_the_user_turn(fake):
    backend = OpenAIBackend("fake-model", base_url=fake.base_url)
    collect(backend, [GenerationRequest(messages=(("system", "Be brief."), ("user", "Great!")), answer_prefix="Label:")])
    sent = fake.received[0].body["messages"]
    assert sent == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Great!\nLabel:"}]


@pytest.mark.parametrize("status", [429, 503])
def test_transient_failures_are_retried_after_the_wait_the_server_asks(fake, status):
    # 1.1 s is longer than the SDK's own backoff for the first two retries (0.375-0.5 s, then
    # 0.75-1 s), so gaps of at least 1.1 s between arrivals show that the server's wait is the one
    # honoured. Measured server-side, a busy machine can only make the gaps longer, never shorter.
    fake.fail_first, fake.fail_status, fake.retry_after_ms = 2, status, 1100
    backend = OpenAIBackend("fake-model", base_url=fake.base_url, max_retries=3)
    results, calls = collect(backend, [chat("hello")])
    assert results[0].text == "positive" and calls == [0]
    assert len(fake.received) == 3  # N failures + the success
    assert all(r.body == fake.received[0].body for r in fake.received)  # the same request again
    gaps = [b.at - a.at for a, b in zip(fake.received, fake.received[1:])]
    assert all(gap >= 1.1 for gap in gaps), gaps


def test_a_request_that_keeps_failing_is_one_line_error(fake):
    fake.fail_first, fake.fail_status = 10**6, 503
    backend = OpenAIBackend("fake-model", base_url=fake.base_url, max_retries=2)
    calls: list[int] = []
    with pytest.raises(PromptgymError) as info:
        backend.generate([chat("hello")], lambda i, r: calls.append(i))
    message = str(info.value)
    assert "\n" not in message and fake.base_url in message and "503" in message
    assert "try again later" in message and "after 2 retries" in message
    assert len(fake.received) == 3 and calls == []


def test_concurrency_limit_is_respected(fake):
    fake.delay = 0.1
    backend = OpenAIBackend("fake-model", base_url=fake.base_url, max_concurrency=3)
    results, calls = collect(backend, [chat(f"r{i}") for i in range(10)])
    assert sorted(calls) == list(range(10)) and all(r.text == "positive" for r in results)
    assert 1 < fake.max_in_flight <= 3


def test_a_failing_request_stops_the_batch_after_reporting_the_finished_ones(fake):
    fake.reject = lambda body: body["messages"][0]["content"] == "bad"
    backend = OpenAIBackend("fake-model", base_url=fake.base_url, max_concurrency=1)
    calls: list[int] = []
    requests = [chat("r0"), chat("r1"), chat("bad"), chat("r3")]
    with pytest.raises(PromptgymError, match="HTTP 400: request rejected by the test"):
        backend.generate(requests, lambda i, r: calls.append(i))
    assert calls == [0, 1]  # in order at concurrency 1; r3 (maybe sent already) was cancelled
    assert [r.body["messages"][0]["content"] for r in fake.received][:3] == ["r0", "r1", "bad"]


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("PROMPTGYM_OPENAI_CONCURRENCY", "3")
    monkeypatch.setenv("PROMPTGYM_OPENAI_RETRIES", "0")
    monkeypatch.setenv("PROMPTGYM_OPENAI_TIMEOUT", "2.5")
    backend = OpenAIBackend("m", base_url="http://127.0.0.1:1/v1")
    assert (backend.max_concurrency, backend.max_retries, backend.timeout) == (3, 0, 2.5)
    assert OpenAIBackend("m", base_url="http://127.0.0.1:1/v1", max_concurrency=5).max_concurrency == 5
    monkeypatch.setenv("PROMPTGYM_OPENAI_RETRIES", "many")
    with pytest.raises(PromptgymError, match="PROMPTGYM_OPENAI_RETRIES"):
        OpenAIBackend("m", base_url="http://127.0.0.1:1/v1")


def test_wrong_api_key_is_one_line_error(fake):
    fake.api_key = "right"
    with pytest.raises(PromptgymError) as info:
        collect(OpenAIBackend("fake-model", base_url=fake.base_url, api_key="wrong"), [chat("x")])
    message = str(info.value)
    assert "\n" not in message and fake.base_url in message
    assert "HTTP 401" in message and "Incorrect API key" in message and "OPENAI_API_KEY" in message
    assert len(fake.received) == 1  # 4xx are not retried
    results, _ = collect(OpenAIBackend("fake-model", base_url=fake.base_url, api_key="right"), [chat("x")])
    assert results[0].text == "positive"


def test_unknown_model_is_one_line_error(fake):
    with pytest.raises(PromptgymError) as info:
        collect(OpenAIBackend("no-such-model", base_url=fake.base_url), [chat("x")])
    message = str(info.value)
    assert "\n" not in message and fake.base_url in message and "no-such-model" in message
    assert "HTTP 404" in message and "does not exist" in message


def test_connection_refused_is_one_line_error():
    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = OpenAIBackend("m", base_url=url, max_retries=1)
    with pytest.raises(PromptgymError) as info:
        collect(backend, [chat("x")])
    message = str(info.value)
    assert "\n" not in message and url in message and "cannot connect" in message


def test_base_url_without_scheme_is_rejected_at_once():
    with pytest.raises(PromptgymError, match="must start with http"):
        OpenAIBackend("m", base_url="127.0.0.1:8000/v1")


def test_works_from_inside_a_running_event_loop(fake):
    """Notebooks run an event loop: generation then happens in a helper thread."""
    import asyncio

    async def inside() -> list:
        return collect(OpenAIBackend("fake-model", base_url=fake.base_url), [chat("x")])[0]

    assert asyncio.run(inside())[0].text == "positive"


def _dataset(tmp_path: Path) -> Path:
    path = tmp_path / "sentiment.jsonl"
    path.write_text("".join(json.dumps({"input": x, "target": y}) + "\n" for x, y in SENTIMENT))
    return path


def test_api_surfaces_endpoint_errors_as_one_line(fake, tmp_path):
    with pytest.raises(PromptgymError) as info:
        api.optimize(str(_dataset(tmp_path)), method="ape", budget=10, train_size=4, test_size=4,
                     task_model=f"openai:missing@{fake.base_url}", optimizer_model=f"openai:missing@{fake.base_url}")
    assert "\n" not in str(info.value) and fake.base_url in str(info.value) and "HTTP 404" in str(info.value)


@pytest.mark.parametrize("case", ["refused", "401", "404"])
def test_cli_prints_endpoint_errors_as_one_line(fake, tmp_path, monkeypatch, case):
    fake.api_key = "right"
    monkeypatch.setenv("OPENAI_API_KEY", "wrong" if case == "401" else "right")
    url = f"http://127.0.0.1:{free_port()}/v1" if case == "refused" else fake.base_url
    model = "missing" if case == "404" else "fake-model"
    if case == "refused":  # keep the SDK's connection retries (with backoff) short
        monkeypatch.setenv("PROMPTGYM_OPENAI_RETRIES", "1")
    spec = f"openai:{model}@{url}"
    result = CliRunner().invoke(main, ["optimize", "--dataset", str(_dataset(tmp_path)), "--method", "ape",
                                       "--budget", "10", "--train-size", "4", "--test-size", "4",
                                       "--task-model", spec, "--optimizer-model", spec, "--json"])
    lines = result.stderr.strip().splitlines()
    # (404: the endpoint passes the preflight, which a wrong key fails, but not the check at run start
    # of whether it scores options by log-probability: no projection, no run)
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("promptgym: error: ") and url in lines[0]
    assert "Traceback" not in result.output
    expected = {"refused": "cannot connect", "401": "HTTP 401", "404": "HTTP 404"}[case]
    assert expected in lines[0]


def test_logprob_scoring_over_completions_echo(fake):
    backend = OpenAIBackend("fake-model", base_url=fake.base_url, logprob_scoring=True)
    assert backend.supports_scoring
    request = ScoreRequest(continuations=(" positive", " very negative"), text="Review: fine.\nSentiment:")
    results, calls = collect(backend, [request], kind="score")
    assert calls == [0]
    scores = results[0]
    assert scores.token_counts == (1, 2)
    assert scores.logprobs == pytest.approx((fake_logprob(" positive"),
                                             fake_logprob(" very") + fake_logprob(" negative")))
    sent = fake.requests_to("/v1/completions")
    assert len(sent) == 2 and all(r.body["echo"] and r.body["logprobs"] == 1 and r.body["max_tokens"] == 1 for r in sent)
    assert {r.body["prompt"] for r in sent} == {"Review: fine.\nSentiment: positive", "Review: fine.\nSentiment: very negative"}
    assert fake_tokens("a b") == ["a", " b"]


def test_echo_scoring_needs_a_raw_text_layout_and_a_server_without_log_probs_is_one_line(fake):
    request = ScoreRequest(continuations=(" a",), messages=(("user", "x"),))
    with pytest.raises(PromptgymError, match="layout plain"):
        collect(OpenAIBackend("fake-model", base_url=fake.base_url, logprob_scoring=True), [request], "score")
    with pytest.raises(PromptgymError, match="returns no log-probabilities.*; use --scoring generate$"):
        collect(OpenAIBackend("fake-model", base_url=fake.base_url), [request], "score")


@pytest.mark.parametrize("per_token", [False, True])
def test_embeddings_are_batched_and_come_back_in_request_order(fake, per_token):
    fake.per_token_embeddings = per_token
    backend = OpenAIBackend("fake-model", base_url=fake.base_url)
    texts = [f"text number {i} " + "word " * (i % 3) for i in range(40)]
    results, calls = collect(backend, [EmbeddingRequest(t) for t in texts], "embed")
    assert sorted(calls) == list(range(40))
    assert [list(r.vector) for r in results] == [fake_vector(t) for t in texts]
    sent = fake.requests_to("/embeddings")
    assert sorted(len(r.body["input"]) for r in sent) == [8, 32]  # EMBED_BATCH texts per request
    assert {(r.body["model"], r.body["encoding_format"]) for r in sent} == {("fake-model", "float")}
    assert sum(r.prompt_tokens for r in results) == sum(len(fake_tokens(t)) for t in texts)


def test_embeddings_of_another_model_name_it_in_identity_and_errors(fake):
    plain = OpenAIBackend("fake-model", base_url=fake.base_url)
    other = OpenAIBackend("fake-model", base_url=fake.base_url, embedding_model="no-such-embedder")
    assert other.identity != plain.identity and other.identity.startswith(plain.identity)
    with pytest.raises(PromptgymError) as info:
        collect(other, [EmbeddingRequest("hello")], "embed")
    message = str(info.value)
    assert "\n" not in message and "'no-such-embedder'" in message and "404" in message


# -- b. the real model behind the protocol: llama_cpp.server on the embedded GGUF ----------------

@pytest.fixture(scope="module")
def llama_server():
    """``python -m llama_cpp.server`` on the embedded model; yields its base URL."""
    with llama_cpp_server() as base:
        yield base


@pytest.mark.integration
def test_real_model_generation_over_http(llama_server):
    backend = OpenAIBackend("smollm2", base_url=llama_server, max_concurrency=2)
    requests = [chat("What is the capital of France? Answer in one word.", max_tokens=6),
                GenerationRequest(text="The opposite of hot is", max_tokens=4, stop=("\n",))]
    results, calls = collect(backend, requests)
    assert sorted(calls) == [0, 1]
    assert all(r.text.strip() and r.completion_tokens > 0 and r.prompt_tokens > 0 for r in results)


@pytest.mark.integration
def test_real_model_end_to_end_optimize_over_http(llama_server, tmp_path):
    spec = f"openai:smollm2@{llama_server}"
    env = dict(os.environ, PROMPTGYM_HOME=str(tmp_path / "home"))
    env.pop("OPENAI_API_KEY", None)
    out = subprocess.run(
        [sys.executable, "-m", "promptgym.cli", "optimize", "--dataset", str(_dataset(tmp_path)),
         "--task-model", spec, "--optimizer-model", spec, "--method", "ape", "--budget", "30",
         "--train-size", "8", "--test-size", "6", "--json", "--quiet"],
        capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("run_id", "best_prompt", "initial_prompt", "test_initial", "test_best", "llm_calls",
                "budget_used", "improved_on_test"):
        assert key in summary
    assert summary["method"] == "ape" and summary["budget_used"] <= 30
    assert summary["train_size"] == 8 and summary["test_size"] == 6
    assert summary["task_model"] == f"openai:{llama_server}:smollm2"
    assert 0.0 <= summary["test_best"] <= 1.0 and summary["llm_calls"] > 0
