"""Throughput of choice scoring on the embedded model, as ratios measured in one run.

Two questions (promptgym issue 3):

1. **Ours vs raw.** "Ours" is the whole path a run takes: ``Evaluator.run_task(ChoiceTask, Prompt,
   examples)`` with an empty response cache and a run-store ledger in a fresh temp dir, so template
   rendering, tokenisation, request hashing, the cache lookup, one SQLite insert per answer and one
   ledger row per call are all inside the timer. "Raw" is the least code that computes the same
   numbers straight on ``llama_cpp.Llama``: the prompt token ids (taken beforehand from
   ``LlamaCppBackend.prompt_text`` + ``tokenize``) are evaluated after the longest prefix already in
   the context, the last logits give each option's first token, and the other option tokens are
   evaluated one at a time. Goal: ours <= 1.10x raw. Both must give the same option log-probs
   (checked, max difference recorded) or the comparison would be meaningless.
2. **Prefix KV reuse on vs off.** ``LlamaCppBackend(reuse_prefix=True)`` vs ``reuse_prefix=False``
   on the same requests (``backend.score`` directly, no evaluator).

3. **HTTP concurrency** (issue 14, ``--part http``, no model): requests/s achieved through
   ``Evaluator.run_task`` over ``OpenAIBackend`` against a loopback server that answers after a fixed
   delay, as a fraction of ideal (``in_flight / delay``) at 1, 4, 16 and 64 in flight; goal >= 0.80
   at 16. See ``run_http``; it writes ``results/throughput-http.json``.

4. **Pools of endpoints** (issue 16, ``--part pool``, no model): requests/s through
   ``Evaluator.run_task`` (generating) over one ``OpenAIBackend`` whose spec lists 1, 2 and 4 loopback
   servers (each in its own process, every answer after a fixed delay) at a fixed per-endpoint limit,
   as a fraction of ideal (``endpoints * limit / delay``); next to each pool, one endpoint with the
   same total in flight (so the pool's own cost shows apart from the load of that many requests),
   and 4 endpoints of which one is a dead port (ideal: the 3 live ones). See ``run_pool``; it writes
   ``results/throughput-pool.json``.

The backend alone (reuse on) is also timed against raw, which splits the overhead of ours into a
backend part and an evaluator part when the goal is missed.

Decisions:
- Machines are noisy (two cores shared with other work), so no absolute time is the claim: each
  round times every variant once, the order rotates from round to round, and the report gives the
  median over rounds of the per-round ratio (min and max next to it).
- Every variant starts a round with an empty KV cache (``Llama.reset``), so each pays for the shared
  instruction prefix once per round, as a run does on its first example.
- Setup outside the timer: loading the data and models, creating the empty cache/store files (a run
  does that once). A short untimed warm-up first pages the weights in and compiles templates.
- Only one llama.cpp context computes at a time (all variants run one after another in this
  process), and every model is closed at the end.
- Examples: a seeded sample (``split_dataset``) of ``example:sentiment`` (a 400-row sample of
  ``bigbench:multiemo/all_sentence_en``, which the recorded results used) with the
  task's own instruction and the default ``chat`` layout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from promptgym.data.dataset import split_dataset
from promptgym.data.loaders import load_dataset
from promptgym.evaluation.cache import ResponseCache
from promptgym.evaluation.evaluator import Budget, Evaluator
from promptgym.models.base import OptionScores, ScoreRequest
from promptgym.models.llama_cpp_backend import LlamaCppBackend
from promptgym.store.runs import RunStore
from promptgym.tasks.prompt import DEFAULT_LAYOUT, Prompt, get_layout
from promptgym.tasks.task import ChoiceTask

DATASET = "example:sentiment"
GOAL = 1.10  # ours may be at most this many times slower than raw llama-cpp-python
RESULTS = Path(__file__).resolve().parent / "results" / "throughput.json"
ATOL = 1e-3  # log-probs of ours and raw must agree this closely (same tokens, same decode batches)


class RawScorer:
    """Minimal option scoring written directly against ``llama_cpp.Llama``."""

    def __init__(self, model_path: Path, n_ctx: int, n_threads: int):
        import llama_cpp

        self._get_logits = llama_cpp.llama_get_logits_ith
        self.llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=n_ctx, n_threads=n_threads,
                                   n_threads_batch=n_threads, verbose=False)
        self.n_vocab = self.llm.n_vocab()

    def _last_logprobs(self) -> np.ndarray:
        logits = np.ctypeslib.as_array(self._get_logits(self.llm.ctx, -1), shape=(self.n_vocab,))
        logits = logits.astype(np.float64)
        top = logits.max()
        return logits - top - np.log(np.exp(logits - top).sum())

    def score(self, prompt: list[int], options: list[list[int]]) -> list[float]:
        llm = self.llm
        keep, limit = 0, min(llm.n_tokens, len(prompt) - 1)
        while keep < limit and llm.input_ids[keep] == prompt[keep]:
            keep += 1
        llm.n_tokens = keep  # eval() drops the KV cells from here on
        llm.eval(prompt[keep:])
        base = llm.n_tokens
        first = self._last_logprobs()
        out = []
        for toks in options:
            total = float(first[toks[0]])
            for tok, nxt in itertools.pairwise(toks):
                llm.eval([tok])
                total += float(self._last_logprobs()[nxt])
            llm.n_tokens = base
            out.append(total)
        return out

    def reset(self) -> None:
        self.llm.reset()

    def close(self) -> None:
        self.llm.close()


def _timed(fn: Callable[[], list[list[float]]]) -> tuple[float, list[list[float]]]:
    start = time.perf_counter()
    logprobs = fn()
    return time.perf_counter() - start, logprobs


def _summary(values: list[float]) -> dict:
    return dict(median=round(statistics.median(values), 4), min=round(min(values), 4),
                max=round(max(values), 4), per_round=[round(v, 4) for v in values])


def _max_diff(a: list[list[float]], b: list[list[float]]) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b))


def _new_tokens(prompts: list[list[int]]) -> list[int]:
    """Tokens each prompt must evaluate when the previous prompt's prefix is kept (as in a round):
    the prefix-reuse ratio follows from these and the full prompt lengths."""
    out, previous = [], []
    for tokens in prompts:
        keep = 0
        while keep < min(len(previous), len(tokens) - 1) and previous[keep] == tokens[keep]:
            keep += 1
        out.append(len(tokens) - keep)
        previous = tokens
    return out


def run(n_examples: int, rounds: int, seed: int = 0, dataset: str = DATASET,
        layout: str = DEFAULT_LAYOUT, threads: int | None = None, log=print) -> dict:
    data = load_dataset(dataset)
    examples = split_dataset(data, n_examples, 0, 0, seed).train
    task = ChoiceTask()
    prompt = Prompt(instruction=data.description or "Read the input and choose the correct label.",
                    layout=get_layout(layout))
    requests = [task.request(prompt, ex) for ex in examples]
    assert all(isinstance(r, ScoreRequest) for r in requests)

    backend = LlamaCppBackend(n_threads=threads, reuse_prefix=True)
    n_threads = backend.llm.context_params.n_threads
    no_reuse = LlamaCppBackend(model_path=backend.path, n_ctx=backend.n_ctx, n_threads=n_threads,
                               reuse_prefix=False)
    raw = RawScorer(backend.path, backend.n_ctx, n_threads)
    prompt_ids = [backend.tokenize(backend.prompt_text(r.messages, r.text, r.answer_prefix)) for r in requests]
    option_ids = [[backend.tokenize(o, add_bos=False, special=False) for o in r.continuations]
                  for r in requests]
    tmp = tempfile.TemporaryDirectory(prefix="promptgym-bench-")

    fresh = itertools.count()

    def ours(items=examples) -> Callable[[], list[list[float]]]:
        """A fresh cache and run store (created before the timer), then one timed run_task."""
        folder = Path(tmp.name) / f"ours{next(fresh)}"
        cache = ResponseCache(f"sqlite:///{folder / 'cache.sqlite'}")
        store = RunStore(f"sqlite:///{folder / 'runs.sqlite'}")
        run_id = store.create_run("benchmark", dataset, {})
        evaluator = Evaluator(backend, backend, cache, Budget(None),
                              ledger=lambda rows: store.add_calls(run_id, rows))
        backend.llm.reset()

        def go() -> list[list[float]]:
            result = evaluator.run_task(task, prompt, items)
            assert evaluator.usage.calls == len(items) and evaluator.usage.cached_calls == 0
            return [list(r.logprobs) for r in result.responses]
        return go

    def direct(model: LlamaCppBackend, reqs=requests) -> Callable[[], list[list[float]]]:
        model.llm.reset()

        def go() -> list[list[float]]:
            out: list[list[float]] = [[] for _ in reqs]

            def keep(i: int, scores: OptionScores) -> None:
                out[i] = list(scores.logprobs)
            model.score(reqs, keep)
            return out
        return go

    def rawloop(n: int | None = None) -> Callable[[], list[list[float]]]:
        raw.reset()
        return lambda: [raw.score(p, o) for p, o in zip(prompt_ids[:n], option_ids[:n])]

    variants: dict[str, Callable[[], Callable[[], list[list[float]]]]] = {
        "ours": ours, "raw": rawloop, "reuse_on": lambda: direct(backend), "reuse_off": lambda: direct(no_reuse)}

    # Untimed warm-up on a few examples: page the weights in, compile the templates.
    w = min(3, len(examples))
    ours(examples[:w])()
    rawloop(w)()
    direct(backend, requests[:w])()
    direct(no_reuse, requests[:w])()

    names = list(variants)
    times: dict[str, list[float]] = {k: [] for k in names}
    diffs_raw, diffs_reuse, agree = [], [], True
    load_before = os.getloadavg()
    started = time.perf_counter()
    for rnd in range(rounds):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        got: dict[str, list[list[float]]] = {}
        for name in order:
            seconds, got[name] = _timed(variants[name]())
            times[name].append(seconds)
        diffs_raw.append(_max_diff(got["ours"], got["raw"]))
        diffs_reuse.append(_max_diff(got["reuse_on"], got["reuse_off"]))
        agree &= got["ours"] == got["reuse_on"]
        log(f"round {rnd + 1}/{rounds}: " + "  ".join(f"{k} {times[k][-1]:.2f}s" for k in names))
    wall = time.perf_counter() - started
    load_after = os.getloadavg()
    for model in (backend, no_reuse, raw):
        model.close()
    tmp.cleanup()

    if max(diffs_raw) > ATOL:
        raise AssertionError(f"ours and raw disagree on option log-probs (max diff {max(diffs_raw):.2e}):"
                             " the comparison would not be of the same computation")
    if not agree:
        raise AssertionError("run_task and backend.score gave different log-probs for the same requests")

    per_round = lambda a, b: [x / y for x, y in zip(times[a], times[b])]
    ratios = {
        "ours_vs_raw": _summary(per_round("ours", "raw")),
        "reuse_off_vs_on": _summary(per_round("reuse_off", "reuse_on")),
        "backend_vs_raw": _summary(per_round("reuse_on", "raw")),
        "ours_vs_backend": _summary(per_round("ours", "reuse_on")),
    }
    size = backend.path.stat().st_size
    return {
        "benchmark": "throughput",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in load_after]},
        "llama_cpp_python": importlib.metadata.version("llama-cpp-python"),
        "model": {"identity": backend.identity, "file": backend.path.name, "bytes": size,
                  "n_ctx": backend.n_ctx, "n_threads": n_threads},
        "dataset": dataset, "layout": layout, "seed": seed, "instruction": prompt.instruction,
        "n_examples": len(examples), "rounds": rounds,
        "prompt_tokens_mean": round(float(np.mean([len(p) for p in prompt_ids])), 1),
        "new_prompt_tokens_mean_with_reuse": round(float(np.mean(_new_tokens(prompt_ids))), 1),
        "option_tokens": sorted({len(t) for opts in option_ids for t in opts}),
        "seconds_per_round": {k: [round(v, 4) for v in times[k]] for k in names},
        "wall_seconds": round(wall, 2),
        "ratios": ratios,
        "checks": {"max_abs_logprob_diff_ours_vs_raw": max(diffs_raw),
                   "max_abs_logprob_diff_reuse_off_vs_on": max(diffs_reuse),
                   "atol": ATOL},
        "goal": {"ours_vs_raw_at_most": GOAL, "met": ratios["ours_vs_raw"]["median"] <= GOAL},
    }


def table(result: dict) -> str:
    rows = [("ours / raw llama-cpp-python", "ours_vs_raw"), ("  backend alone / raw", "backend_vs_raw"),
            ("  ours / backend alone", "ours_vs_backend"), ("prefix reuse off / on", "reuse_off_vs_on")]
    lines = [(f"{result['n_examples']} examples x {result['rounds']} rounds, {result['model']['file']}, "
              f"llama-cpp-python {result['llama_cpp_python']}, {result['machine']['cpu_count']} CPUs"),
             f"{'ratio (median of per-round)':32} {'median':>7} {'min':>7} {'max':>7}"]
    for label, key in rows:
        r = result["ratios"][key]
        lines.append(f"{label:32} {r['median']:7.3f} {r['min']:7.3f} {r['max']:7.3f}")
    goal = result["goal"]
    lines.append(f"goal ours <= {goal['ours_vs_raw_at_most']:.2f}x raw: {'met' if goal['met'] else 'NOT met'}")
    return "\n".join(lines)


# -- HTTP concurrency (issue 14 part 4): no model, a loopback server answering after a fixed delay --

HTTP_RESULTS = Path(__file__).resolve().parent / "results" / "throughput-http.json"
HTTP_LEVELS = (1, 4, 16, 64)
HTTP_GOAL = 0.80  # achieved / ideal requests per second at HTTP_GOAL_AT in flight, at least
HTTP_GOAL_AT = 16
FAKE_MODEL = "fake-model"

# The fake server of the tests in a child process: its handler threads do not share this process's
# GIL (and cores) with the client being measured. One line per command on stdin: "stats" answers
# {"received", "max_in_flight"} since the last "stats" (and resets them); end of input stops it.
_SERVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from fake_openai_server import FakeOpenAIServer
server = FakeOpenAIServer(delay=float(sys.argv[2]), models=(sys.argv[3],), max_requests=10**9,
                          lifetime=float(sys.argv[4])).start()
print(server.base_url, flush=True)
for line in sys.stdin:
    with server._lock:
        stats = dict(received=len(server.received), max_in_flight=server.max_in_flight)
        server.received.clear()
        server.max_in_flight = 0
    print(json.dumps(stats), flush=True)
server.stop()
"""


class LoopbackServer:
    """``tests/integration/fake_openai_server.py`` in a child process, every answer after ``delay`` s."""

    def __init__(self, delay: float, lifetime: float = 3600.0, script: str = _SERVER):
        """``script``: the child's program, given argv [fake server's folder, delay, model, lifetime]
        (``scaling.py`` passes one whose answers vary with the request)."""
        import subprocess

        fake_dir = Path(__file__).resolve().parents[1] / "tests" / "integration"
        self.proc = subprocess.Popen([sys.executable, "-c", script, str(fake_dir), str(delay), FAKE_MODEL,
                                      str(lifetime)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url.startswith("http://"):
            self.close()
            raise RuntimeError("the loopback server did not start")

    def stats(self) -> dict:
        """Requests received and the most seen in flight at once since the last call."""
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def _http_examples(n: int, tag: str) -> list:
    """``n`` distinct two-choice examples (distinct requests: an empty cache misses on every one)."""
    from promptgym.data.dataset import Example

    return [Example(id=f"{tag}-{i}", input=f"Review {tag}-{i}: the film was fine, the popcorn was cold.",
                    targets=("positive",), choices=("positive", "negative")) for i in range(n)]


def _raw_http(base_url: str, bodies: list[dict], in_flight: int) -> float:
    """The least client code: ``httpx.AsyncClient`` POSTing ``bodies`` to /chat/completions, at most
    ``in_flight`` at once (what the loopback server and the socket layer allow). Seconds taken."""
    import asyncio

    import openai

    # The httpx the SDK runs on (found as the backend finds it: the package name may differ).
    base = next(c for c in openai.DefaultAsyncHttpxClient.__mro__ if c.__name__ == "AsyncClient")
    httpx = sys.modules[base.__module__.split(".")[0]]

    async def go() -> None:
        limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
            semaphore = asyncio.Semaphore(in_flight)

            async def one(body: dict) -> None:
                async with semaphore:
                    resp = await client.post("/chat/completions", json=body)
                    resp.raise_for_status()
                    resp.json()
            await asyncio.gather(*(one(b) for b in bodies))

    start = time.perf_counter()
    asyncio.run(go())
    return time.perf_counter() - start


def run_http(levels: Sequence[int] = HTTP_LEVELS, delay: float = 0.2, waves: int = 10, repeats: int = 3,
             modes: Sequence[str] = ("raw", "generate", "score"), log=print) -> dict:
    """Achieved requests/s over ideal (``in_flight / delay``) for each number of requests in flight.

    Per level, ``waves * in_flight`` HTTP requests (so every level ideally takes ``waves * delay``
    seconds). Modes: ``generate`` = ``Evaluator.run_task`` with ``ChoiceTask(scoring="generate")``
    (one /chat/completions request per example), ``score`` = ``ChoiceTask`` log-prob scoring with
    ``logprob_scoring=True`` and the ``plain`` layout (one /completions request per option, two
    options per example), ``raw`` = bare httpx (the ceiling the server and loopback allow). Each
    ``run_task`` gets an empty cache and a run-store ledger in a fresh temp dir (created before the
    timer), its own ``OpenAIBackend(max_concurrency=in_flight)``; the timer covers the whole call.
    """
    from promptgym.models.openai_backend import OpenAIBackend

    tmp = tempfile.TemporaryDirectory(prefix="promptgym-bench-http-")
    fresh = itertools.count()
    server = LoopbackServer(delay)
    prompt_for = {"generate": Prompt("Classify the sentiment of the review.", layout=get_layout("chat")),
                  "score": Prompt("Classify the sentiment of the review.", layout=get_layout("plain"))}
    task_for = {"generate": ChoiceTask(scoring="generate", max_tokens=4), "score": ChoiceTask()}

    def evaluator_for(in_flight: int, scoring: bool) -> Evaluator:
        folder = Path(tmp.name) / f"run{next(fresh)}"
        cache = ResponseCache(f"sqlite:///{folder / 'cache.sqlite'}")
        store = RunStore(f"sqlite:///{folder / 'runs.sqlite'}")
        run_id = store.create_run("benchmark-http", "synthetic", {})
        backend = OpenAIBackend(FAKE_MODEL, base_url=server.base_url, api_key="unused", max_concurrency=in_flight,
                                max_retries=0, timeout=60, logprob_scoring=scoring)
        return Evaluator(backend, backend, cache, Budget(None), ledger=lambda rows: store.add_calls(run_id, rows),
                         origin=run_id)

    def sent(mode: str, requests: int) -> int:
        """HTTP requests a level sends: scoring sends two per example, so an even number."""
        per_example = 2 if mode == "score" else 1
        return per_example * -(-requests // per_example)

    def measure(mode: str, in_flight: int, requests: int, tag: str) -> float:
        if mode == "raw":
            bodies = [dict(model=FAKE_MODEL, max_tokens=4, messages=[{"role": "user", "content": f"raw {tag}-{i}"}])
                      for i in range(requests)]
            return _raw_http(server.base_url, bodies, in_flight)
        per_example = 2 if mode == "score" else 1
        examples = _http_examples(requests // per_example, tag)
        evaluator = evaluator_for(in_flight, scoring=mode == "score")
        start = time.perf_counter()
        result = evaluator.run_task(task_for[mode], prompt_for[mode], examples)
        seconds = time.perf_counter() - start
        assert evaluator.usage.calls == len(examples) and evaluator.usage.cached_calls == 0
        assert all(p == "positive" for p in result.predictions) or mode == "score"
        return seconds

    try:
        for mode in modes:  # untimed warm-up: imports, the SDK's first client, template compilation
            measure(mode, 2, 4, f"warm-{mode}")
        server.stats()
        seconds: dict[str, dict[int, list[float]]] = {m: {n: [] for n in levels} for m in modes}
        seen: dict[str, dict[int, list[int]]] = {m: {n: [] for n in levels} for m in modes}
        sizes: dict[str, dict[int, int]] = {m: {} for m in modes}
        cpu_ms: dict[str, dict[int, list[float]]] = {m: {n: [] for n in levels} for m in modes}
        load_before = os.getloadavg()
        started = time.perf_counter()
        for rnd in range(repeats):
            order = list(modes[rnd % len(modes):]) + list(modes[:rnd % len(modes)])
            for n in levels:
                for mode in order:
                    requests = sent(mode, waves * n)
                    cpu = time.process_time()
                    took = measure(mode, n, requests, f"{mode}-{n}-{rnd}")
                    cpu_ms[mode][n].append(1000 * (time.process_time() - cpu) / requests)
                    stats = server.stats()
                    if stats["received"] != requests:
                        raise AssertionError(f"{mode} at {n} in flight: the server received {stats['received']} "
                                             f"requests, expected {requests}")
                    seconds[mode][n].append(took)
                    sizes[mode][n] = requests
                    seen[mode][n].append(stats["max_in_flight"])
                    log(f"repeat {rnd + 1}/{repeats} {mode:8} {n:3} in flight: {requests:4} requests in {took:.2f}s"
                        f" = {requests / took / (n / delay):.3f} of ideal (server saw {stats['max_in_flight']} at once;"
                        f" client CPU {cpu_ms[mode][n][-1]:.2f} ms/request)")
        wall = time.perf_counter() - started
        load_after = os.getloadavg()
    finally:
        server.close()
        tmp.cleanup()

    ratios = {m: {str(n): _summary([sizes[m][n] / s / (n / delay) for s in seconds[m][n]]) for n in levels}
              for m in modes}
    at = str(HTTP_GOAL_AT)
    checked = [m for m in modes if m != "raw"]
    goal_met = (all(ratios[m][at]["median"] >= HTTP_GOAL for m in checked)
                if HTTP_GOAL_AT in levels and checked else None)
    return {
        "benchmark": "throughput-http",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in load_after]},
        "openai": importlib.metadata.version("openai"),
        "server": "tests/integration/fake_openai_server.py (ThreadingHTTPServer) in a child process",
        "delay_seconds": delay, "levels": list(levels), "waves": waves, "repeats": repeats,
        "modes": list(modes),
        "requests_per_level": {m: {str(n): sizes[m][n] for n in levels} for m in modes},
        "ideal_seconds_per_level": round(waves * delay, 4),
        "seconds": {m: {str(n): [round(v, 4) for v in seconds[m][n]] for n in levels} for m in modes},
        # This process's CPU time per request (all threads): unlike the seconds, it hardly depends on
        # the load; the event loop can start at most ~1000 / ms requests per second.
        "client_cpu_ms_per_request": {m: {str(n): [round(v, 3) for v in cpu_ms[m][n]] for n in levels}
                                      for m in modes},
        "server_max_in_flight": {m: {str(n): seen[m][n] for n in levels} for m in modes},
        "achieved_over_ideal": ratios,
        "wall_seconds": round(wall, 2),
        "goal": {"achieved_over_ideal_at_least": HTTP_GOAL, "in_flight": HTTP_GOAL_AT, "modes": checked,
                 "met": goal_met},
    }


POOL_RESULTS = HTTP_RESULTS.parent / "throughput-pool.json"
POOL_SIZES = (1, 2, 4)
# A language model's answer takes a second or more; at 0.2 s the client's own CPU (~4 ms a request on
# this shared 2-core machine) is what 32 in flight measure, not the pool.
POOL_DELAY = 1.0


def run_pool(sizes: Sequence[int] = POOL_SIZES, limit: int = 8, delay: float = POOL_DELAY, waves: int = 5,
             repeats: int = 3, dead: bool = True, log=print) -> dict:
    """Achieved requests/s over ideal for pools of ``sizes`` endpoints, ``limit`` in flight each.

    Per pool, ``waves * live * limit`` examples (one /chat/completions request each), so every pool
    ideally takes ``waves * delay`` seconds. Each server's requests and most in flight are read back
    from it: the spread over the endpoints and the limit are checked, not assumed. With ``dead``, a
    pool of the largest size whose first endpoint is a port where nothing listens (its circuit opens
    at the first refused connection and is probed again after the cooldown) is measured too.
    """
    import socket

    from promptgym.models.openai_backend import OpenAIBackend

    tmp = tempfile.TemporaryDirectory(prefix="promptgym-bench-pool-")
    fresh = itertools.count()
    servers = [LoopbackServer(delay) for _ in range(max(sizes))]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    prompt = Prompt("Classify the sentiment of the review.", layout=get_layout("chat"))
    task = ChoiceTask(scoring="generate", max_tokens=4)
    # (name, URLs, limit per endpoint): the pools, and for each pool of n > 1 one endpoint with the
    # same total in flight (n * limit), which separates the pool's own cost from the cost of having
    # that many requests in flight on a loaded machine
    variants = [(str(n), [srv.base_url for srv in servers[:n]], limit) for n in sizes]
    variants += [(f"1 at {n * limit}", [servers[0].base_url], n * limit) for n in sizes if n > 1]
    if dead:
        variants.append((f"{max(sizes)} (1 dead)", [dead_url] + [srv.base_url for srv in servers[:max(sizes) - 1]],
                         limit))

    def measure(urls: list[str], tag: str, examples_count: int, limit: int) -> float:
        folder = Path(tmp.name) / f"run{next(fresh)}"
        store = RunStore(f"sqlite:///{folder / 'runs.sqlite'}")
        run_id = store.create_run("benchmark-pool", "synthetic", {})
        backend = OpenAIBackend(FAKE_MODEL, base_url=",".join(urls), api_key="unused", max_concurrency=limit,
                                max_retries=2, timeout=60)
        evaluator = Evaluator(backend, backend, ResponseCache(f"sqlite:///{folder / 'cache.sqlite'}"), Budget(None),
                              ledger=lambda rows: store.add_calls(run_id, rows), origin=run_id)
        examples = _http_examples(examples_count, tag)
        start = time.perf_counter()
        result = evaluator.run_task(task, prompt, examples)
        seconds = time.perf_counter() - start
        assert evaluator.usage.calls == examples_count and all(p == "positive" for p in result.predictions)
        return seconds

    try:
        measure([servers[0].base_url, servers[-1].base_url], "warm", 4, limit)  # imports, first clients
        for srv in servers:
            srv.stats()
        seconds: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        spread: dict[str, list[list[int]]] = {name: [] for name, _, _ in variants}
        peaks: dict[str, list[list[int]]] = {name: [] for name, _, _ in variants}
        cpu_ms: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        sizes_of: dict[str, int] = {}
        load_before = os.getloadavg()
        started = time.perf_counter()
        for rnd in range(repeats):
            order = variants[rnd % len(variants):] + variants[:rnd % len(variants)]
            for name, urls, each in order:
                live = [u for u in urls if u != dead_url]
                count = waves * len(live) * each
                cpu = time.process_time()
                took = measure(urls, f"{name}-{rnd}", count, each)
                cpu_ms[name].append(1000 * (time.process_time() - cpu) / count)
                stats = {srv.base_url: srv.stats() for srv in servers}
                got = [stats[u]["received"] for u in live]
                peak = [stats[u]["max_in_flight"] for u in live]
                if sum(got) != count or max(peak) > each:
                    raise AssertionError(f"pool {name}: servers received {got} (expected {count} in all), "
                                         f"most in flight {peak} (limit {each})")
                seconds[name].append(took)
                spread[name].append(got)
                peaks[name].append(peak)
                sizes_of[name] = count
                ideal = len(live) * each / delay
                log(f"repeat {rnd + 1}/{repeats} pool {name:10}: {count:4} requests in {took:.2f}s = "
                    f"{count / took / ideal:.3f} of ideal; per endpoint {got}, most in flight {peak}; "
                    f"client CPU {cpu_ms[name][-1]:.2f} ms/request")
        wall = time.perf_counter() - started
        load_after = os.getloadavg()
    finally:
        for srv in servers:
            srv.close()
        tmp.cleanup()

    live_of = {name: len([u for u in urls if u != dead_url]) for name, urls, _ in variants}
    limit_of = {name: each for name, _, each in variants}
    ratios = {name: _summary([sizes_of[name] / s / (live_of[name] * limit_of[name] / delay) for s in seconds[name]])
              for name, _, _ in variants}
    return {
        "benchmark": "throughput-pool",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in load_after]},
        "openai": importlib.metadata.version("openai"),
        "server": "tests/integration/fake_openai_server.py (ThreadingHTTPServer), one child process per endpoint",
        "path": "Evaluator.run_task, ChoiceTask(scoring='generate'), one /chat/completions request per example",
        "delay_seconds": delay, "limit_per_endpoint": limit, "waves": waves, "repeats": repeats,
        "pools": [name for name, _, _ in variants],
        "live_endpoints": live_of,
        "limit_of_pool": limit_of,
        "requests_per_pool": sizes_of,
        "ideal_seconds_per_pool": round(waves * delay, 4),
        "seconds": {name: [round(v, 4) for v in seconds[name]] for name, _, _ in variants},
        "requests_per_endpoint": spread,
        "server_max_in_flight": peaks,
        # This process's CPU time per request: hardly depends on the load (see run_http)
        "client_cpu_ms_per_request": {name: [round(v, 3) for v in cpu_ms[name]] for name, _, _ in variants},
        "achieved_over_ideal": ratios,
        "wall_seconds": round(wall, 2),
    }


def pool_table(result: dict) -> str:
    lines = [(f"pools: delay {result['delay_seconds']:g}s, limit {result['limit_per_endpoint']} per endpoint, "
              f"{result['waves']} waves, {result['repeats']} repeats, {result['machine']['cpu_count']} CPUs"),
             f"{'endpoints':14}{'requests':>10}{'achieved/ideal (median; min-max)':>36}{'per endpoint (last)':>26}"]
    for name in result["pools"]:
        r = result["achieved_over_ideal"][name]
        lines.append(f"{name:14}{result['requests_per_pool'][name]:>10}"
                     f"{r['median']:>21.3f} ({r['min']:.2f}-{r['max']:.2f}){str(result['requests_per_endpoint'][name][-1]):>26}")
    return "\n".join(lines)


def http_table(result: dict) -> str:
    levels = [str(n) for n in result["levels"]]
    lines = [(f"HTTP: delay {result['delay_seconds']:g}s, {result['waves']} waves per level, "
              f"{result['repeats']} repeats, {result['machine']['cpu_count']} CPUs, openai {result['openai']}"),
             "achieved/ideal requests per second (median of repeats; min-max)",
             f"{'in flight':12}" + "".join(f"{n:>18}" for n in levels)]
    for mode in result["modes"]:
        cells = []
        for n in levels:
            r = result["achieved_over_ideal"][mode][n]
            cells.append(f"{r['median']:.3f} ({r['min']:.2f}-{r['max']:.2f})")
        lines.append(f"{mode:12}" + "".join(f"{c:>18}" for c in cells))
    goal = result["goal"]
    if goal["met"] is not None:
        lines.append(f"goal >= {goal['achieved_over_ideal_at_least']:.0%} of ideal at {goal['in_flight']} in flight "
                     f"({', '.join(goal['modes'])}): {'met' if goal['met'] else 'NOT met'}")
    return "\n".join(lines)


def _write(out: Path, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".tmp")
    partial.write_text(json.dumps(result, indent=2) + "\n")
    partial.replace(out)


WARM_RESULTS = RESULTS.parent / "bench-warm.json"
WARM_GOAL = 0.05


def run_bench_warm(bench_dir: Path, commands: Sequence[str], log=print) -> dict:
    """Re-run the ``promptgym bench`` commands that filled ``bench_dir`` (finished) and compare:
    model calls made (new ledger rows in its run store; any row means a run did work), new runs,
    and the warm wall time over the cold one (the sum of every cell's recorded wall time)."""
    import shlex
    import sqlite3
    import subprocess

    def counts() -> tuple[int, int]:
        with sqlite3.connect(bench_dir / "work" / "runs.sqlite") as db:
            return (db.execute("select count(*) from calls").fetchone()[0],
                    db.execute("select count(*) from runs").fetchone()[0])

    rows = [json.loads(line) for line in (bench_dir / "work" / "cells.jsonl").read_text().splitlines() if line.strip()]
    cold = sum(r["wall_seconds"] for r in {r["key"]: r for r in rows}.values())
    calls_before, runs_before = counts()
    started = time.perf_counter()
    for command in commands:
        log(f"warm: {command}")
        subprocess.run(shlex.split(command), check=True, stdout=subprocess.DEVNULL)
    warm = time.perf_counter() - started
    calls_after, runs_after = counts()
    ratio = warm / cold if cold else float("nan")
    return {"benchmark": "bench-warm", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " && ".join(commands), "cells": len({r["key"] for r in rows}),
            "cold_seconds": round(cold, 1), "warm_seconds": round(warm, 2), "ratio": round(ratio, 5),
            "new_calls": calls_after - calls_before, "new_runs": runs_after - runs_before,
            "goal": {"new_calls": 0, "ratio_below": WARM_GOAL},
            "goal_met": calls_after == calls_before and runs_after == runs_before and ratio < WARM_GOAL,
            "machine": {"cpu_count": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("embedded", "http", "pool", "bench-warm"), default="embedded",
                        help="embedded: the llama.cpp model (default); http: concurrency over loopback HTTP, no model; "
                             "pool: pools of 1, 2, 4 loopback endpoints, no model; "
                             "bench-warm: re-run a finished promptgym bench")
    parser.add_argument("--pool-sizes", type=int, nargs="+", default=list(POOL_SIZES), help="pool: endpoints per pool")
    parser.add_argument("--pool-limit", type=int, default=8, help="pool: requests in flight per endpoint")
    parser.add_argument("--bench-dir", type=Path, default=None, help="bench-warm: the finished bench directory")
    parser.add_argument("--bench-command", action="append", default=[],
                        help="bench-warm: a promptgym bench command that filled --bench-dir (repeatable)")
    parser.add_argument("--delay", type=float, default=None,
                        help="http, pool: seconds the server waits before each answer (default: 0.2 http, 1.0 pool)")
    parser.add_argument("--levels", type=int, nargs="+", default=list(HTTP_LEVELS), help="http: requests in flight")
    parser.add_argument("--waves", type=int, default=None,
                        help="http, pool: requests per level = waves x in flight (default: 10 http, 5 pool)")
    parser.add_argument("--repeats", type=int, default=3, help="http: rounds over all levels (median reported)")
    parser.add_argument("--modes", nargs="+", choices=("raw", "generate", "score"), default=["raw", "generate", "score"],
                        help="http: bare httpx, run_task generating, run_task scoring log-probs")
    parser.add_argument("--examples", type=int, default=40, help="examples scored per variant per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (ratios: median over rounds)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the example sample")
    parser.add_argument("--dataset", default=DATASET)
    parser.add_argument("--layout", default=DEFAULT_LAYOUT)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the backend's)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help=f"result JSON (default {RESULTS}; with --part http {HTTP_RESULTS})")
    args = parser.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)
    if args.part == "bench-warm":
        if not args.bench_dir or not args.bench_command:
            parser.error("--part bench-warm needs --bench-dir and --bench-command")
        out = WARM_RESULTS if args.out == RESULTS else args.out
        result = run_bench_warm(args.bench_dir, args.bench_command, log=log)
        _write(out, result)
        print(f"warm re-run: {result['new_calls']} calls, {result['new_runs']} new runs, {result['warm_seconds']:.1f} s "
              f"= {100 * result['ratio']:.2f}% of the cold {result['cold_seconds']:.0f} s; goal "
              f"{'met' if result['goal_met'] else 'NOT met'}")
        print(f"written: {out}")
        return 0
    if args.part == "pool":
        out = POOL_RESULTS if args.out == RESULTS else args.out
        result = run_pool(args.pool_sizes, args.pool_limit, args.delay or POOL_DELAY, args.waves or 5, args.repeats,
                          log=log)
        _write(out, result)
        print(pool_table(result))
        print(f"written: {out}")
        return 0
    if args.part == "http":
        out = HTTP_RESULTS if args.out == RESULTS else args.out
        result = run_http(args.levels, args.delay or 0.2, args.waves or 10, args.repeats, args.modes, log=log)
        _write(out, result)
        print(http_table(result))
        print(f"written: {out}")
        return 0
    result = run(args.examples, args.rounds, seed=args.seed, dataset=args.dataset, layout=args.layout,
                 threads=args.threads, log=log)
    _write(args.out, result)
    print(table(result))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
