"""Pools of endpoints over real loopback HTTP (issue 16, item 3): several fake OpenAI-protocol servers
on 127.0.0.1, one model spec ``openai:MODEL@URL1,URL2,...``.

What is checked, counted at the servers: round robin spreads requests evenly; no endpoint ever has
more in flight than its limit; a server killed mid-run or one that answers too late is failed over,
the run ends with the same result as on one healthy server, and the calls the servers answered are
exactly the run's ledger rows (none charged twice, the charged ones at most the budget); every
endpoint down is one line; a pool shares its cache with its first endpoint alone; an Ollama-like pool
(no prompt log-probabilities) takes the generate-and-match path.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

pytest.importorskip("openai")

from click.testing import CliRunner  # noqa: E402

from promptgym import api  # noqa: E402
from promptgym.cli import main  # noqa: E402
from promptgym.errors import PromptgymError  # noqa: E402
from promptgym.evaluation.cache import ResponseCache  # noqa: E402
from promptgym.evaluation.evaluator import Budget, Evaluator  # noqa: E402
from promptgym.models.base import GenerationRequest, ScoreRequest  # noqa: E402
from promptgym.models.factory import make_backend  # noqa: E402
from promptgym.secrets import redact_spec  # noqa: E402
from promptgym.models.endpoint_pool import parse_endpoints  # noqa: E402
from promptgym.models.openai_backend import OpenAIBackend  # noqa: E402
from promptgym.store.runs import RunStore  # noqa: E402

try:  # tests/integration may or may not be a package
    from .fake_openai_server import FakeOpenAIServer
except ImportError:
    from fake_openai_server import FakeOpenAIServer  # type: ignore[no-redef]

from support import SENTIMENT, sentiment_reply as reply, write_sentiment as write_dataset  # noqa: E402


def chat(text: str) -> GenerationRequest:
    return GenerationRequest(messages=(("user", text),))


def generate(backend: OpenAIBackend, requests) -> list:
    results: list = [None] * len(requests)

    def keep(i: int, r) -> None:
        assert results[i] is None, "on_result twice for one request"
        results[i] = r

    backend.generate(requests, keep)
    return results


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def model_posts(server: FakeOpenAIServer) -> int:
    return len([r for r in server.received if r.path.endswith(("completions", "embeddings"))])


@pytest.fixture
def servers():
    started: list[FakeOpenAIServer] = []

    def start(count: int, **kw) -> list[FakeOpenAIServer]:
        new = [FakeOpenAIServer(**kw).start() for _ in range(count)]
        started.extend(new)
        return new

    yield start
    for server in started:
        server.stop()


def pool_url(servers: list[FakeOpenAIServer], limits: list[int] | None = None) -> str:
    return ",".join(s.base_url + (f"#{n}" if limits else "") for s, n in zip(servers, limits or [0] * len(servers)))


# -- the spec -----------------------------------------------------------------------------------------

def test_pool_spec_parses_urls_and_limits_and_keeps_the_single_url_syntax():
    single = make_backend("openai:m@http://127.0.0.1:8000/v1")
    assert not single.failover and [e.url for e in single.endpoints] == ["http://127.0.0.1:8000/v1"]
    pool = make_backend("openai:m@http://a:8000/v1#4, http://b:8080/v1,http://c:11434/v1#1")
    assert pool.failover
    assert [(e.url, e.limit) for e in pool.endpoints] == [("http://a:8000/v1", 4), ("http://b:8080/v1", 8),
                                                         ("http://c:11434/v1", 1)]
    assert pool.max_concurrency == 13  # in flight over the pool: the sum of the limits
    assert OpenAIBackend("m", base_url=["http://a/v1", "http://b/v1"], max_concurrency=3).max_concurrency == 6


@pytest.mark.parametrize("urls, problem", [
    ("http://a/v1,,http://b/v1", "empty URL"),
    ("http://a/v1#0", "whole number >= 1"),
    ("http://a/v1#x", "whole number >= 1"),
    ("http://a/v1,b:8000/v1", "must start with http"),
    ("http://a/v1,http://a/v1/", "listed twice"),
])
def test_a_bad_pool_spec_is_one_line_error(urls, problem):
    with pytest.raises(PromptgymError, match=problem) as info:
        make_backend(f"openai:m@{urls}")
    assert "\n" not in str(info.value)


def test_keys_in_pool_urls_are_redacted_everywhere(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    spec = "openai:m@http://u:KEY111@127.0.0.1:1/v1,http://u:KEY222@127.0.0.1:2/v1#2"
    assert redact_spec(spec) == "openai:m@http://u:***@127.0.0.1:1/v1,http://u:***@127.0.0.1:2/v1#2"
    live = make_backend(spec)
    stored = make_backend(redact_spec(spec))  # a stored spec: the keys' places dropped, limits kept
    assert [(e.url, e.limit) for e in stored.endpoints] == [("http://127.0.0.1:1/v1", 8), ("http://127.0.0.1:2/v1", 2)]
    shown = live.identity + live._where() + "".join(e.where + repr(e) for e in live.endpoints)
    assert "KEY111" not in shown and "KEY222" not in shown


def test_a_pool_has_the_cache_identity_of_its_first_endpoint_and_shares_its_answers(servers, tmp_path):
    a, b, c = servers(3, reply=reply)
    single = OpenAIBackend("fake-model", base_url=a.base_url)
    pool = OpenAIBackend("fake-model", base_url=pool_url([a, b, c]))
    assert pool.identity == single.identity == f"openai:{a.base_url}:fake-model"
    assert OpenAIBackend("other-model", base_url=pool_url([a, b])).identity != single.identity
    cache = ResponseCache(f"sqlite:///{tmp_path}/cache.db")
    requests = [chat(f"Review {i}: fine.") for i in range(12)]
    first = Evaluator(single, single, cache).generate(requests)
    again = Evaluator(pool, pool, cache)
    assert again.generate(requests) == first  # every answer from the cache ...
    assert again.usage.calls == 0 and again.usage.cached_calls == 12
    assert [model_posts(s) for s in (a, b, c)] == [12, 0, 0]  # ... not one more request


# -- scheduling -------------------------------------------------------------------------------------

@pytest.mark.parametrize("limit", [12, 2])
def test_round_robin_spreads_requests_evenly(servers, limit):
    """With room for every request (limit 12) the turns are exact; with 2 slots each and equal
    latency the free slots come round in turn, so the shares stay within a request or two."""
    pool_servers = servers(3, delay=0.05)
    backend = OpenAIBackend("fake-model", base_url=pool_url(pool_servers), max_concurrency=limit)
    results = generate(backend, [chat(f"r{i}") for i in range(36)])
    assert all(r.text == "positive" for r in results)
    counts = [model_posts(s) for s in pool_servers]
    assert sum(counts) == 36
    if limit == 12:
        assert counts == [12, 12, 12]
    else:
        assert max(counts) - min(counts) <= 3, counts


def test_each_endpoint_stays_within_its_own_limit(servers):
    pool_servers = servers(3, delay=0.15)
    limits = [1, 2, 4]
    backend = OpenAIBackend("fake-model", base_url=pool_url(pool_servers, limits))
    generate(backend, [chat(f"r{i}") for i in range(42)])
    seen = [s.max_in_flight for s in pool_servers]
    assert seen == limits  # at the limit (the load was there), never above it
    # a faster server takes more: in flight over the same latency, so requests in proportion to its limit
    counts = [model_posts(s) for s in pool_servers]
    assert counts[0] < counts[1] < counts[2] and sum(counts) == 42


# -- failover -----------------------------------------------------------------------------------------

def test_a_server_killed_mid_batch_is_failed_over_and_each_call_reported_once(servers):
    a, b, c = servers(3, delay=0.05)
    b.kill_after = 5  # dies at its sixth request; requests in flight there get no answer
    backend = OpenAIBackend("fake-model", base_url=pool_url([a, b, c]), max_concurrency=4, max_retries=2,
                            cooldown=0.2)
    calls: list[int] = []
    results: list = [None] * 60

    def keep(i: int, r) -> None:
        calls.append(i)
        results[i] = r

    started = time.monotonic()
    backend.generate([chat(f"r{i}") for i in range(60)], keep)
    assert sorted(calls) == list(range(60)) and all(r.text == "positive" for r in results)
    assert b.killed and 0 < b.answered <= 5 < len(b.received)  # requests in flight at the kill: lost
    assert a.answered + b.answered + c.answered == 60  # every call answered once, none twice
    assert backend.endpoints[1].failures >= 1 and backend.endpoints[1].last_error.startswith("cannot connect")
    assert time.monotonic() - started < 10


def test_a_server_answering_too_late_is_failed_over(servers):
    slow, fast = servers(2)
    slow.delay = 1.5  # past the client's timeout
    backend = OpenAIBackend("fake-model", base_url=pool_url([slow, fast]), timeout=0.5, max_retries=2,
                            cooldown=30)
    faults: list[dict] = []

    def keep(i: int, r) -> None:
        faults.append(dict(backend.last_faults))
        assert r.text == "positive"

    started = time.monotonic()
    backend.generate([chat(f"r{i}") for i in range(10)], keep)
    took = time.monotonic() - started
    assert len(faults) == 10 and fast.answered == 10
    assert backend.endpoints[0].failures == 1  # one trip however many requests timed out there
    assert sum(f.get("timeout", 0) for f in faults) >= 1
    assert sum(f.get("failover", 0) for f in faults) == sum(f.get("timeout", 0) for f in faults)
    assert took < 3  # one timeout (0.5 s) then the fast server; not 10 timeouts


def test_a_5xx_endpoint_is_failed_over_and_tried_again_after_its_cooldown(servers):
    bad, good = servers(2, delay=0.02)
    bad.fail_first, bad.fail_status = 3, 500  # three 500s, then it answers again
    backend = OpenAIBackend("fake-model", base_url=pool_url([bad, good]), max_concurrency=1, max_retries=2,
                            cooldown=0.1)
    generate(backend, [chat(f"r{i}") for i in range(40)])
    assert bad.answered > 0 and bad.answered + good.answered == 40
    assert backend.endpoints[0].failures == 0  # closed again after a good probe
    gaps = [y.at - x.at for x, y in zip(bad.received, bad.received[1:4])]
    assert min(gaps) >= 0.1  # a failed endpoint is left alone for its cooldown (doubled per failure)


def test_every_endpoint_down_is_one_line_error(servers):
    a, b = servers(2, delay=0.02)
    urls = pool_url([a, b])
    a.kill_after, b.kill_after = 3, 3
    backend = OpenAIBackend("fake-model", base_url=urls, max_concurrency=2, max_retries=6, cooldown=0.1)
    calls: list[int] = []
    started = time.monotonic()
    with pytest.raises(PromptgymError) as info:
        backend.generate([chat(f"r{i}") for i in range(30)], lambda i, r: calls.append(i))
    message = str(info.value)
    assert "\n" not in message and "every endpoint failed 3 or more times in a row" in message
    assert all(u in message for u in urls.split(",")) and "cannot connect" in message
    assert len(calls) == a.answered + b.answered <= 6
    assert time.monotonic() - started < 5


def test_the_preflight_starts_when_one_endpoint_answers_and_names_the_others(servers, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTGYM_HOME", str(tmp_path))
    (alive,) = servers(1, reply=reply)
    dead = dead_url()
    spec = f"openai:fake-model@{dead},{alive.base_url}"
    out = CliRunner().invoke(main, ["--store", f"sqlite:///{tmp_path}/runs.db", "optimize",
                                    "--dataset", str(write_dataset(tmp_path)), "--method", "ape",
                                    "--budget", "12", "--train-size", "6", "--test-size", "4",
                                    "--task-model", spec, "--optimizer-model", spec, "--json", "--quiet"])
    assert out.exit_code == 0, out.output
    warnings = out.stderr.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("promptgym: warning: ")
    assert dead in warnings[0] and "cannot connect" in warnings[0] and alive.base_url not in warnings[0]
    assert alive.answered > 0


def test_the_preflight_of_a_pool_with_no_endpoint_answering_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTGYM_HOME", str(tmp_path))
    dead = [dead_url(), dead_url()]
    spec = f"openai:fake-model@{dead[0]},{dead[1]}"
    started = time.monotonic()
    out = CliRunner().invoke(main, ["--store", f"sqlite:///{tmp_path}/runs.db", "optimize",
                                    "--dataset", str(write_dataset(tmp_path)), "--method", "ape",
                                    "--budget", "12", "--train-size", "6", "--test-size", "4",
                                    "--task-model", spec, "--optimizer-model", spec, "--quiet"])
    assert out.exit_code != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no endpoint answers at run start" in lines[0]
    assert all(u in lines[0] for u in dead) and "Traceback" not in out.output
    assert time.monotonic() - started < 5


# -- whole runs: the budget counted at the servers ----------------------------------------------------

def run(tmp_path: Path, tag: str, spec: str, budget: int = 40, seed: int = 3):
    return api.optimize(str(write_dataset(tmp_path)), method="ape", budget=budget, seed=seed,
                        train_size=6, test_size=4, dev_size=4, task_model=spec, optimizer_model=spec,
                        store_url=f"sqlite:///{tmp_path / tag}-runs.db",
                        cache_url=f"sqlite:///{tmp_path / tag}-cache.db")


OUTCOME = ("best_prompt", "initial_score", "best_score", "test_initial", "test_best", "dev_best",
           "budget_used", "candidates")


def test_a_run_through_a_server_killed_mid_run_matches_the_healthy_run_and_the_budget_holds(
        servers, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTGYM_OPENAI_CONCURRENCY", "3")
    monkeypatch.setenv("PROMPTGYM_OPENAI_COOLDOWN", "0.2")
    (healthy,) = servers(1, reply=reply)
    expected = run(tmp_path, "healthy", f"openai:fake-model@{healthy.base_url}")
    a, b, c = servers(3, reply=reply, delay=0.01)
    b.kill_after = 8
    budget = 40
    got = run(tmp_path, "pool", "openai:fake-model@" + pool_url([a, b, c]), budget=budget)
    assert b.killed, "the server was to die mid-run"
    assert {k: got.summary[k] for k in OUTCOME} == {k: expected.summary[k] for k in OUTCOME}
    rows = [r for r in RunStore(f"sqlite:///{tmp_path}/pool-runs.db").call_rows(got.run_id) if not r["cached"]]
    charged = [r for r in rows if r["charged"]]
    answered = a.answered + b.answered + c.answered
    assert answered == len(rows)  # each call answered by exactly one server: none made (or charged) twice
    assert len({r["key"] for r in charged}) == len(charged)
    assert len(charged) == got.summary["budget_used"] <= budget
    assert answered - (len(rows) - len(charged)) <= budget  # what the servers answered, less held-out calls
    faults = RunStore(f"sqlite:///{tmp_path}/pool-runs.db").fault_counts(got.run_id)
    assert faults.get("failover", 0) >= 1 and 0 < b.answered <= 8


# -- Ollama-like servers: no prompt log-probabilities -----------------------------------------------

def test_a_pool_of_ollama_like_servers_scores_choices_by_generating(servers, tmp_path):
    ollama = servers(2, reply=reply, echo_logprobs=False)
    spec = "openai:fake-model@" + pool_url(ollama)
    result = run(tmp_path, "ollama", spec, budget=20)
    assert result.summary["budget_used"] <= 20
    sent = [r for s in ollama for r in s.received if r.path.endswith("completions")]
    assert sent and all(r.path.endswith("/chat/completions") for r in sent)  # generate and match
    assert all(s.answered > 0 for s in ollama)
    # asking such a server for echoed prompt log-probs anyway: the one-line setup error
    backend = OpenAIBackend("fake-model", base_url=pool_url(ollama), logprob_scoring=True, max_retries=1)
    with pytest.raises(PromptgymError, match="no echoed prompt log-probabilities") as info:
        backend.score([ScoreRequest(continuations=(" positive",), text="Review: fine.\nSentiment:")],
                      lambda i, r: None)
    assert "\n" not in str(info.value)


def test_parse_endpoints_without_url_is_the_hosted_api():
    (hosted,) = parse_endpoints(None, 5)
    assert hosted.url is None and hosted.limit == 5 and hosted.where == "https://api.openai.com/v1"


def test_a_pool_of_vllm_like_servers_scores_log_probs_on_every_endpoint(servers):
    """vLLM echoes prompt log-probs: each option's request may go to another server, same scores."""
    vllm = servers(2)
    backend = OpenAIBackend("fake-model", base_url=pool_url(vllm), logprob_scoring=True, max_concurrency=16)
    request = ScoreRequest(continuations=(" positive", " very negative"), text="Review: fine.\nSentiment:")
    found: list = []
    backend.score([request] * 1 + [ScoreRequest(continuations=(" a", " b"), text=f"R{i}:") for i in range(7)],
                  lambda i, r: found.append((i, r)))
    scores = dict(found)[0]
    assert scores.logprobs == pytest.approx((-0.9, -0.5 - 0.9))  # fake_logprob: -len(token) / 10
    assert [model_posts(s) for s in vllm] == [8, 8]  # 16 option requests, in turn (room for all)


def test_a_4xx_is_not_failed_over_and_names_its_endpoint(servers):
    good, strict = servers(2)
    strict.api_key = "other"  # this one rejects the key: a setup error, the same on a retry
    backend = OpenAIBackend("fake-model", base_url=pool_url([good, strict]), max_concurrency=1)
    with pytest.raises(PromptgymError) as info:
        generate(backend, [chat(f"r{i}") for i in range(4)])
    message = str(info.value)
    assert "\n" not in message and "HTTP 401" in message and strict.base_url.rstrip("/") in message
    assert good.base_url not in message
    # (a request cancelled while being sent may reach a server without its body: not counted)
    rejected = [r.body["messages"][0]["content"] for r in strict.received if r.body.get("messages")]
    answered = [r.body["messages"][0]["content"] for r in good.received if r.body.get("messages")]
    assert rejected and not set(rejected) & set(answered)  # not sent again elsewhere
    assert len(rejected) == len(set(rejected))  # nor again to the same server


def test_cooldown_from_the_environment(monkeypatch):
    monkeypatch.setenv("PROMPTGYM_OPENAI_COOLDOWN", "0.5")
    assert OpenAIBackend("m", base_url="http://127.0.0.1:1/v1,http://127.0.0.1:2/v1").cooldown == 0.5
    monkeypatch.setenv("PROMPTGYM_OPENAI_COOLDOWN", "0")
    with pytest.raises(PromptgymError, match="cooldown > 0"):
        OpenAIBackend("m", base_url="http://127.0.0.1:1/v1,http://127.0.0.1:2/v1")


# -- the real model behind the protocol: two llama_cpp.server processes ------------------------------

@pytest.mark.integration
def test_a_pool_of_two_real_llama_cpp_servers_fails_over_when_one_stops(monkeypatch):
    try:
        from .llama_server import llama_cpp_server
    except ImportError:
        from llama_server import llama_cpp_server  # type: ignore[no-redef]
    monkeypatch.setenv("PROMPTGYM_THREADS", "1")  # two servers on a shared 2-core machine
    requests = [GenerationRequest(text=f"{word} is the opposite of", max_tokens=4, stop=("\n",))
                for word in ("Hot", "Up", "Big", "Fast")]
    with llama_cpp_server() as second:
        with llama_cpp_server() as first:
            backend = OpenAIBackend("smollm2", base_url=f"{first}#1,{second}#1", timeout=60, cooldown=30)
            assert backend.preflight() is None
            before = generate(backend, requests[:2])
        # the first server's process has been terminated: its requests go to the second
        after = generate(backend, requests[2:])
    assert all(r.text.strip() and r.completion_tokens > 0 for r in before + after)
    assert backend.endpoints[0].failures == 1 and backend.endpoints[1].failures == 0
    assert backend.endpoints[0].last_error.startswith("cannot connect")
