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


def test_auto_phase_tells_test_calls_by_their_inputs(setup):
    _, base, counter = setup
    counter.reset(label="pg", budget=1, phase="auto", test_inputs=['a "quoted" held-out input', "short"])
    assert chat(base, 'Classify: a "quoted" held-out input')[0] == 200  # test: JSON-escaped match
    assert chat(base, "a train input")[0] == 200  # search, 1 of 1
    assert chat(base, "short")[0] == 429  # too short to match: search, past the budget
    assert chat(base, 'again a "quoted" held-out input')[0] == 200
    phases = counter.stats()["phases"]
    assert (phases["test"]["calls"], phases["search"]["calls"], phases["search"]["refused"]) == (2, 1, 1)
