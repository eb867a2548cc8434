"""benchmarks/peers/proxy.py (stdlib only): each model call is counted in its phase with the
server's tokens, search calls past the budget are refused with a 429 that never reaches the
server, test calls are never charged, and the ``auto`` phase tells test calls by their inputs."""

from __future__ import annotations

import importlib.util
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.fake_openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("peers_proxy", ROOT / "benchmarks" / "peers" / "proxy.py")
proxy = importlib.util.module_from_spec(spec)
sys.modules["peers_proxy"] = proxy
spec.loader.exec_module(proxy)


def post(url: str, data: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(data).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def chat(base: str, text: str) -> tuple[int, dict]:
    return post(f"{base}/v1/chat/completions",
                {"model": "fake-model", "messages": [{"role": "user", "content": text}], "max_tokens": 4})


@pytest.fixture()
def setup():
    with FakeOpenAIServer() as upstream:
        server, counter = proxy.serve(upstream.base_url.removesuffix("/v1"))
        try:
            yield upstream, f"http://127.0.0.1:{server.server_address[1]}", counter
        finally:
            server.shutdown()


def test_budget_refuses_search_calls_and_never_charges_test_calls(setup):
    upstream, base, counter = setup
    post(f"{base}/_proxy/reset", {"label": "x", "budget": 2, "phase": "search"})
    assert [chat(base, f"q{i}")[0] for i in range(3)] == [200, 200, 429]
    status, body = chat(base, "q3")
    assert status == 429 and body["error"]["code"] == "budget_exhausted"
    assert len(upstream.received) == 2  # refusals never reach the server
    post(f"{base}/_proxy/phase", {"phase": "test"})
    assert [chat(base, f"t{i}")[0] for i in range(3)] == [200, 200, 200]
    with urllib.request.urlopen(f"{base}/v1/models", timeout=10) as resp:  # forwarded, not counted
        assert resp.status == 200
    with urllib.request.urlopen(f"{base}/_proxy/stats", timeout=10) as resp:
        stats = json.loads(resp.read())
    search, test = stats["phases"]["search"], stats["phases"]["test"]
    assert (search["calls"], search["refused"], test["calls"], test["refused"]) == (2, 2, 3, 0)
    assert search["prompt_tokens"] > 0 and search["completion_tokens"] > 0
    assert stats["params"]["max_tokens"] == 7  # every counted request's fields, refused ones too


def test_auto_phase_counts_search_until_the_first_test_input_and_never_refuses(setup):
    upstream, base, counter = setup
    counter.reset(label="pg", budget=1, phase="auto", test_inputs=['a "quoted" held-out input', "short"])
    assert chat(base, "a train input")[0] == 200  # search, 1 of 1
    assert chat(base, "short")[0] == 200  # too short to register: search, past the budget, yet forwarded
    assert chat(base, 'Classify: a "quoted" held-out input')[0] == 200  # test: JSON-escaped match ...
    assert chat(base, "a train input, scored after the test")[0] == 200  # ... and test from then on
    phases = counter.stats()["phases"]
    assert (phases["search"]["calls"], phases["search"]["over_budget"], phases["search"]["refused"]) == (2, 1, 0)
    assert phases["test"]["calls"] == 2 and len(upstream.received) == 4


def test_two_models_on_two_servers_are_one_systems_calls_and_a_base_model_gets_plain_text():
    with FakeOpenAIServer(models=("base",), reply="positive, I think") as task, \
            FakeOpenAIServer(models=("chat-model",), reply="A new instruction.") as meta:
        routes = {"base": proxy.Route(task.base_url.removesuffix("/v1"), plain=True),
                  "chat-model": proxy.Route(meta.base_url.removesuffix("/v1"))}
        server, counter = proxy.serve(meta.base_url.removesuffix("/v1"), routes=routes)
        base = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            counter.reset(label="x", budget=3, phase="search")
            status, answer = post(f"{base}/v1/chat/completions", {"model": "base", "max_tokens": 5, "messages": [
                {"role": "system", "content": "Classify the review."}, {"role": "user", "content": "Loved it."}]})
            assert status == 200 and answer["choices"][0]["message"] == {"role": "assistant", "content": "positive, I think"}
            assert answer["object"] == "chat.completion" and answer["usage"]["prompt_tokens"] == 7
            [sent] = task.received  # the base model got a completion request: contents only, no template
            assert sent.path == "/v1/completions" and "messages" not in sent.body
            assert sent.body["prompt"] == "Classify the review.\n\nLoved it.\n" and sent.body["max_tokens"] == 5
            post(f"{base}/v1/chat/completions", {"model": "base", "messages": [{"role": "user", "content": "x"}]})
            assert task.received[-1].body["max_tokens"] is None  # a chat request's "no limit" kept
            assert post(f"{base}/v1/completions", {"model": "base", "prompt": "As is:", "max_tokens": 2})[0] == 200
            assert task.received[-1].body["prompt"] == "As is:"  # completion requests pass unchanged
            assert chat(base, "q")[0] == 404  # a model neither server serves: not counted, not forwarded
            status, _ = post(f"{base}/v1/chat/completions", {"model": "chat-model", "messages": [
                {"role": "user", "content": "Improve it."}]})
            assert status == 429 and len(meta.received) == 0  # the budget is the system's, over both models
            stats = counter.stats()["phases"]["search"]
            assert (stats["calls"], stats["refused"]) == (3, 1)
            assert stats["by_model"]["base"]["calls"] == 3 and "chat-model" not in stats["by_model"]
        finally:
            server.shutdown()
