"""Faults and the hard budget over real loopback HTTP (issue 13, items 1 and 3).

The fake server (``fake_openai_server``) injects a seeded mix of faults; the OpenAI-compatible
backend must retry or record each one, the run must end with the fault-free run's result, the
ledger must count the faults by kind, a dead endpoint must fail in seconds, and a budget of N must
let at most N calls reach the server however many requests are in flight.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("openai")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from click.testing import CliRunner  # noqa: E402

from promptgym import api  # noqa: E402
from promptgym.cli import main  # noqa: E402
from promptgym.errors import BudgetExhausted, PromptgymError  # noqa: E402
from promptgym.evaluation.cache import ResponseCache  # noqa: E402
from promptgym.evaluation.evaluator import Budget, Evaluator  # noqa: E402
from promptgym.models.base import GenerationRequest, ScoreRequest  # noqa: E402
from promptgym.models.openai_backend import OpenAIBackend  # noqa: E402
from promptgym.store.runs import RunStore  # noqa: E402

try:  # tests/integration may or may not be a package
    from .fake_openai_server import KINDS, FakeOpenAIServer, Faults
except ImportError:
    from fake_openai_server import KINDS, FakeOpenAIServer, Faults  # type: ignore[no-redef]

from support import SENTIMENT, sentiment_reply as reply, write_sentiment as write_dataset  # noqa: E402

HTTP_KINDS = tuple(k for k in KINDS if k != "no_logprobs")  # generation: no echoed log-probs asked


@pytest.fixture
def http_env(monkeypatch):
    monkeypatch.setenv("PROMPTGYM_OPENAI_TIMEOUT", "2.0")  # "timeout" faults answer after 2.6 s
    monkeypatch.setenv("PROMPTGYM_OPENAI_RETRIES", "4")
    monkeypatch.setenv("PROMPTGYM_OPENAI_CONCURRENCY", "8")


def run_optimization(tmp_path: Path, tag: str, server: FakeOpenAIServer, method: str = "ape",
                     budget: int = 80, seed: int = 3):
    """Choices answered by generation (the fake server has no log-probabilities: named, so that
    the check a run makes for them adds no fault of its own to compare)."""
    spec = f"openai:fake-model@{server.base_url}"
    return api.optimize(str(write_dataset(tmp_path)), method=method, budget=budget, seed=seed, scoring="generate",
                        train_size=6, test_size=4, dev_size=4, task_model=spec, optimizer_model=spec,
                        store_url=f"sqlite:///{tmp_path / tag}-runs.db",
                        cache_url=f"sqlite:///{tmp_path / tag}-cache.db")


def outcome(result) -> dict:
    keys = ("best_prompt", "initial_score", "best_score", "test_initial", "test_best", "dev_initial",
            "dev_best", "kept_start", "method_best_prompt", "test_method_best", "budget_used", "candidates")
    return {k: result.summary[k] for k in keys}


@pytest.mark.integration  # two whole runs, ~40 s: the SDK's backoff and the timeouts are real
def test_optimization_with_30_percent_faults_matches_the_fault_free_run(tmp_path, http_env):
    with FakeOpenAIServer(reply=reply) as clean:
        expected = run_optimization(tmp_path, "clean", clean)
    with FakeOpenAIServer(reply=reply, faults=Faults(rate=0.3, seed=7, kinds=HTTP_KINDS)) as faulty:
        got = run_optimization(tmp_path, "faulty", faulty)
        injected = dict(faulty.injected)
    assert outcome(got) == outcome(expected)
    assert sum(injected.values()) > 10 and set(injected) == set(HTTP_KINDS)
    ledger = RunStore(f"sqlite:///{tmp_path / 'faulty'}-runs.db").fault_counts(got.run_id)
    assert ledger == injected  # every fault retried and counted by kind; no call given up
    assert RunStore(f"sqlite:///{tmp_path / 'clean'}-runs.db").fault_counts(expected.run_id) == {}


def test_the_cli_completes_through_faults(tmp_path, http_env, monkeypatch):
    monkeypatch.setenv("PROMPTGYM_HOME", str(tmp_path))
    with FakeOpenAIServer(reply=reply, faults=Faults(rate=0.3, seed=1, kinds=HTTP_KINDS)) as faulty:
        spec = f"openai:fake-model@{faulty.base_url}"
        out = CliRunner().invoke(main, ["--store", f"sqlite:///{tmp_path}/runs.db", "optimize",
                                        "--dataset", str(write_dataset(tmp_path)), "--method", "grips",
                                        "--budget", "30", "--train-size", "6", "--test-size", "4", "--scoring",
                                        "generate", "--task-model", spec, "--optimizer-model", spec, "--json",
                                        "--quiet"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output.strip().splitlines()[-1])
    assert RunStore(f"sqlite:///{tmp_path}/runs.db").fault_counts(summary["run_id"]) == dict(faulty.injected)


def test_logprob_scoring_retries_missing_logprobs_and_truncated_answers(tmp_path, http_env):
    plan = Faults(rate=0.5, seed=2, kinds=("no_logprobs", "truncated", "garbage", "http_503"))
    requests = [ScoreRequest(continuations=(" positive", " negative"), text=f"Review {i}. Sentiment:")
                for i in range(12)]
    with FakeOpenAIServer() as clean, FakeOpenAIServer(faults=plan) as faulty:
        found = []
        for server in (clean, faulty):
            backend = OpenAIBackend("fake-model", base_url=server.base_url, logprob_scoring=True)
            ev = Evaluator(backend, backend, ResponseCache(f"sqlite:///{tmp_path}/{server.port}.db"),
                           ledger=(rows := []).extend)
            found.append((ev.score(requests), rows))
        assert found[0][0] == found[1][0]
        counted: dict[str, int] = {}
        for row in found[1][1]:
            for kind, n in (row["faults"] or {}).items():
                counted[kind] = counted.get(kind, 0) + n
        assert counted == dict(faulty.injected) and counted


def test_an_answer_that_stays_bad_is_a_failed_call_recorded_and_never_cached(tmp_path):
    # the first request is answered well; every later one is empty, however often it is retried
    plan = Faults(rate=1.0, kinds=("empty",), max_per_request=99, after=1)
    with FakeOpenAIServer(faults=plan) as server:
        backend = OpenAIBackend("fake-model", base_url=server.base_url, max_retries=2)
        cache = ResponseCache(f"sqlite:///{tmp_path}/cache.db")
        rows: list = []
        ev = Evaluator(backend, backend, cache, Budget(10), ledger=rows.extend)
        good = ev.generate([GenerationRequest(messages=(("user", "first"),))])
        assert good[0].text == "positive"
        bad = ev.generate([GenerationRequest(messages=(("user", "second"),))])
        assert bad[0].text == ""  # used (the run goes on) ...
        assert rows[-1]["faults"] == {"empty": 3, "failed": 1} and rows[-1]["charged"]
        assert len(server.received) == 4  # 1 + the first try and ANSWER_RETRIES capped at max_retries
        assert cache.lookup([rows[-1]["key"]]) == {}  # ... but never cached as a good answer
        assert ev.budget.spent == 2


def test_a_server_that_never_answers_well_is_the_one_line_error(tmp_path):
    with FakeOpenAIServer(faults=Faults(rate=1.0, kinds=("garbage",), max_per_request=99)) as server:
        backend = OpenAIBackend("fake-model", base_url=server.base_url, max_retries=1)
        with pytest.raises(PromptgymError, match="without any choice"):
            backend.generate([GenerationRequest(messages=(("user", "x"),))], lambda i, r: None)


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["refused", "silent"])
def test_a_dead_endpoint_fails_in_seconds_before_any_work(tmp_path, monkeypatch, case):
    monkeypatch.setenv("PROMPTGYM_HOME", str(tmp_path))
    monkeypatch.setenv("PROMPTGYM_OPENAI_TIMEOUT", "120")  # the preflight does not wait that long
    listener = None
    if case == "refused":
        port = _dead_port()
    else:  # accepts connections (the kernel's backlog) and never answers
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
    spec = f"openai:fake-model@http://127.0.0.1:{port}/v1"
    started = time.monotonic()
    try:
        out = CliRunner().invoke(main, ["--store", f"sqlite:///{tmp_path}/runs.db", "optimize",
                                        "--dataset", str(write_dataset(tmp_path)), "--method", "ape",
                                        "--budget", "20", "--train-size", "6", "--test-size", "4",
                                        "--task-model", spec, "--optimizer-model", spec, "--quiet"])
    finally:
        if listener is not None:
            listener.close()
    elapsed = time.monotonic() - started
    assert out.exit_code != 0
    lines = [line for line in out.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "at run start" in lines[0] and f"127.0.0.1:{port}" in lines[0], out.output
    assert elapsed < (4 if case == "refused" else 9)
    assert RunStore(f"sqlite:///{tmp_path}/runs.db").list_runs() == []  # checked before the run row (issue 26)


def test_an_old_store_without_the_faults_column_is_upgraded(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    RunStore(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:  # as stores made before the column existed
        conn.execute("ALTER TABLE calls DROP COLUMN faults")
        conn.execute("DROP TABLE promptgym_store_version")  # and before Alembic (it came later),
        conn.execute("DROP INDEX uq_candidates_run_seq")  # and before the seq index (later still)
        conn.execute("INSERT INTO calls (run_id, key, role, kind, cached, charged, prompt_tokens, "
                     "completion_tokens, seconds, created) VALUES ('r', 'k', 'task', 'generate', 0, 1, 1, 1, 0.1, 0)")
    store = RunStore(f"sqlite:///{path}")
    store.add_calls("r", [dict(key="k2", role="task", kind="generate", cached=False, charged=True, prompt_tokens=1,
                               completion_tokens=1, seconds=0.1, faults={"http_503": 2})])
    assert store.charged_calls("r") == 2 and store.fault_counts("r") == {"http_503": 2}


# -- the hard budget under concurrency ----------------------------------------------------------------

@pytest.fixture(scope="module")
def budget_server():
    with FakeOpenAIServer(reply=reply, delay=0.1) as server:  # slow enough for 64 to be in flight
        yield server


@settings(max_examples=20, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.integers(0, 100), batches=st.lists(st.integers(1, 120), min_size=1, max_size=3),
)
def test_at_most_budget_calls_reach_the_server_with_64_in_flight(budget_server, tmp_path, limit, batches):
    backend = OpenAIBackend("fake-model", base_url=budget_server.base_url, max_concurrency=64)
    fresh = uuid.uuid4().hex  # hypothesis reuses tmp_path: a new cache (and requests) per example
    ev = Evaluator(backend, backend, ResponseCache(f"sqlite:///{tmp_path}/budget-{fresh}.db"), Budget(limit))
    before = len(budget_server.received)
    for b, size in enumerate(batches):
        requests = [GenerationRequest(messages=(("user", f"{fresh}-{b}-{i}"),)) for i in range(size)]
        try:
            ev.generate(requests)
        except BudgetExhausted:
            pass
    reached = len(budget_server.received) - before
    assert reached == min(limit, sum(batches)) and ev.budget.spent == reached


def test_64_requests_are_really_in_flight_and_the_budget_still_holds(tmp_path):
    # each answer takes 1 s: on 2 busy cores 64 threads need more than 0.3 s to all be in flight
    with FakeOpenAIServer(reply=reply, delay=1.0) as server:
        backend = OpenAIBackend("fake-model", base_url=server.base_url, max_concurrency=64)
        ev = Evaluator(backend, backend, ResponseCache(f"sqlite:///{tmp_path}/c.db"), Budget(100))
        with pytest.raises(BudgetExhausted):
            ev.generate([GenerationRequest(messages=(("user", f"q{i}"),)) for i in range(150)])
        assert len(server.received) == 100 and server.max_in_flight == 64


@pytest.mark.integration  # five whole runs, ~20 s
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.integers(20, 60), method=st.sampled_from(["ape", "grips"]), seed=st.integers(0, 3))
def test_a_whole_run_charges_at_most_its_budget_selection_included(tmp_path, monkeypatch, limit, method, seed):
    """Every request the server saw is a ledger row; the charged ones (search and final
    selection) are at most the budget; the rest are the held-out evaluation, uncharged by design."""
    monkeypatch.setenv("PROMPTGYM_OPENAI_CONCURRENCY", "64")
    tag = f"{method}-{limit}-{seed}-{uuid.uuid4().hex[:8]}"  # hypothesis reuses tmp_path
    with FakeOpenAIServer(reply=reply) as server:
        spec = f"openai:fake-model@{server.base_url}"
        result = api.optimize(str(write_dataset(tmp_path)), method=method, budget=limit, seed=seed,
                              train_size=6, test_size=4, dev_size=4, task_model=spec, optimizer_model=spec,
                              store_url=f"sqlite:///{tmp_path}/{tag}.db", cache_url=f"sqlite:///{tmp_path}/{tag}-c.db")
        posts = [r for r in server.received if r.path.endswith("completions")]
    rows = [r for r in RunStore(f"sqlite:///{tmp_path}/{tag}.db").call_rows(result.run_id) if not r["cached"]]
    charged = sum(r["charged"] for r in rows)
    assert len(posts) == len(rows)
    assert charged == result.summary["budget_used"] <= limit
    assert len(posts) - (len(rows) - charged) <= limit
