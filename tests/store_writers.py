"""Many processes writing one run store and one response cache at once: the worker and the checks
shared by ``tests/store/test_concurrent_writers.py`` and ``benchmarks/store_writers.py``.

Each writer process opens the store and the cache itself (a fresh database: the first opens race
on the migrations too), waits at a barrier, then for ``n`` rounds adds a candidate every writer adds
(same ids, each writer in its own order: one record each, whoever comes first), a candidate of its
own with a score and a ledger row, and a cache answer for a key every writer stores (its own text
and origin: the first stored must stay whole). Then all writers claim the same fresh runs (the
lease's compare-and-set: one winner per run). ``check`` counts what was lost or doubled.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from typing import Any

from promptgym.evaluation.cache import ResponseCache, responses
from promptgym.models.base import Completion
from promptgym.store.lease import Owner
from promptgym.store.runs import RunStore, calls, candidates, runs, scores
from sqlalchemy import func, select


def writer(store_url: str, cache_url: str, run_id: str, lease_runs: list[str], index: int, n: int,
           barrier: Any) -> dict[str, Any]:
    store, cache = RunStore(store_url), ResponseCache(cache_url)
    order = list(range(n))
    random.Random(index).shuffle(order)
    owner = Owner.me()
    barrier.wait()
    started = time.perf_counter()
    for i in range(n):
        store.add_candidate(run_id, f"shared{order[i]}", {"instruction": f"shared {order[i]}"}, [], f"writer{index}")
        mine = f"w{index}-{i}"
        store.add_candidate(run_id, mine, {"instruction": mine}, [f"shared{order[i]}"], "mutate")
        store.add_score(run_id, mine, "dev", i / n, {"e1": 1.0}, {"e1": "positive"})
        store.add_calls(run_id, [dict(key=f"call-{mine}", role="task", kind="generate", cached=False, charged=True,
                                      prompt_tokens=3, completion_tokens=1, seconds=0.0)])
        cache.put(f"key{order[i]}", Completion(text=f"writer {index}", prompt_tokens=index), origin=f"w{index}")
    won = [rid for rid in lease_runs if store.claim(rid, owner, lease=30) is None]
    seconds = time.perf_counter() - started
    store.engine.dispose()
    cache.engine.dispose()
    return dict(index=index, seconds=seconds, won=won, token=owner.token, rows=5 * n)


def run_writers(store_url: str, cache_url: str, writers: int, n: int, leases: int = 5) -> dict[str, Any]:
    """``writers`` processes (spawned: nothing shared but the URLs) on one store and cache; the
    figures and ``check``'s counts."""
    setup = RunStore(store_url)
    run_id = setup.create_run("race", "writers", {})
    lease_runs = [setup.create_run("race", f"lease{i}", {}) for i in range(leases)]
    setup.engine.dispose()
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(writers)
        with context.Pool(writers) as pool:
            started = time.perf_counter()
            results = pool.starmap(writer, [(store_url, cache_url, run_id, lease_runs, i, n, barrier)
                                            for i in range(writers)])
            wall = time.perf_counter() - started
    counts = check(store_url, cache_url, run_id, lease_runs, results, n)
    rows = sum(r["rows"] for r in results)
    slowest = max(r["seconds"] for r in results)
    return dict(writers=writers, rounds=n, rows=rows, seconds=round(slowest, 3),
                rows_per_second=round(rows / slowest, 1), wall_seconds_with_start=round(wall, 2), **counts)


def check(store_url: str, cache_url: str, run_id: str, lease_runs: list[str], results: list[dict[str, Any]],
          n: int) -> dict[str, int]:
    """Lost and doubled rows, seq faults and lease winners; all zero / one when the store is right."""
    store, cache = RunStore(store_url), ResponseCache(cache_url)
    writers = len(results)
    with store.engine.connect() as conn:
        got = conn.execute(select(candidates.c.candidate_id, candidates.c.seq)
                           .where(candidates.c.run_id == run_id)).all()
        score_ids = conn.execute(select(scores.c.candidate_id).where(scores.c.run_id == run_id)).scalars().all()
        call_keys = conn.execute(select(calls.c.key).where(calls.c.run_id == run_id)).scalars().all()
        holders = dict(conn.execute(select(runs.c.run_id, runs.c.owner_token)
                                    .where(runs.c.run_id.in_(lease_runs))).all())
    with cache.engine.connect() as conn:
        stored = conn.execute(select(responses.c.key, responses.c.response, responses.c.origin)
                              .where(responses.c.key.like("key%"))).all()
        cache_rows = conn.execute(select(func.count()).select_from(responses)
                                  .where(responses.c.key.like("key%"))).scalar_one()
    expected = {f"shared{i}" for i in range(n)} | {f"w{w}-{i}" for w in range(writers) for i in range(n)}
    ids = [cid for cid, _ in got]
    seqs = sorted(seq for _, seq in got)
    mine = {f"w{w}-{i}" for w in range(writers) for i in range(n)}
    winners = {rid: [r["token"] for r in results if rid in r["won"]] for rid in lease_runs}
    mixed = 0  # a cache row whose answer and origin come from different writers
    for _, blob, origin in stored:
        mixed += f'"writer {origin[1:]}"' not in blob
    out = dict(
        candidates_lost=len(expected - set(ids)), candidates_doubled=len(ids) - len(set(ids)),
        seq_faults=sum(a != b for a, b in zip(seqs, range(len(seqs)))) + abs(len(seqs) - len(set(seqs))),
        scores_lost=len(mine - set(score_ids)), scores_doubled=len(score_ids) - len(set(score_ids)),
        calls_lost=len({f"call-{m}" for m in mine} - set(call_keys)), calls_doubled=len(call_keys) - len(set(call_keys)),
        cache_lost=n - len({k for k, _, _ in stored}), cache_doubled=cache_rows - n, cache_mixed=mixed,
        leases_without_one_winner=sum(len(w) != 1 for w in winners.values()),
        leases_held_by_another=sum(len(w) == 1 and holders[rid] != w[0] for rid, w in winners.items()),
    )
    store.engine.dispose()
    cache.engine.dispose()
    return out


def evaluator_writer(store_url: str, cache_url: str, run_id: str, requests: int, barrier: Any) -> list[str]:
    """One run's evaluator asking the same ``requests`` generations as every other writer, at once,
    on one cache; its ledger goes to ``run_id``. Returns the keys its model was asked."""
    from promptgym.evaluation.evaluator import Evaluator
    from promptgym.models.base import GenerationRequest

    from support import RecordingBackend

    store, cache = RunStore(store_url), ResponseCache(cache_url)
    asked: list[str] = []
    backend = RecordingBackend(keys=asked)
    evaluator = Evaluator(backend, backend, cache, ledger=lambda rows: store.add_calls(run_id, rows), origin=run_id)
    barrier.wait()
    for i in range(requests):  # one at a time: the writers interleave key by key
        evaluator.generate([GenerationRequest(text=f"Write prompt number {i}.")])
    store.engine.dispose()
    cache.engine.dispose()
    return asked
