"""Four processes write one run store and one cache at once, on SQLite and on PostgreSQL: no row
lost, none doubled, candidate seqs 0..N-1 without a gap or a repeat, the first cache answer kept
whole, one lease winner per run (``tests/store_writers.py`` says what each writer does)."""

from __future__ import annotations

import pytest

from store_writers import run_writers

ZERO = dict(candidates_lost=0, candidates_doubled=0, seq_faults=0, scores_lost=0, scores_doubled=0, calls_lost=0,
            calls_doubled=0, cache_lost=0, cache_doubled=0, cache_mixed=0, leases_without_one_winner=0,
            leases_held_by_another=0)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def urls(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.sqlite'}", f"sqlite:///{tmp_path / 'cache.sqlite'}"
    url = request.getfixturevalue("postgres_url")
    return url, url  # store and cache in one database: their version tables are apart


def test_four_writers_lose_and_double_nothing(urls):
    store_url, cache_url = urls
    result = run_writers(store_url, cache_url, writers=4, n=40)
    assert {k: result[k] for k in ZERO} == ZERO
    assert result["rows"] == 4 * 40 * 5


def test_evaluators_racing_on_one_cache_record_no_duplicate_call(urls):
    """The cache's "duplicate call", as ``ResponseCache`` defines it: writers that miss one key at
    the same moment may each call the model (each records its own call, in its own run), but a
    key never has two cache rows, no run records one key twice as uncached, and once an answer is
    stored nobody asks the model for it again."""
    import multiprocessing

    from sqlalchemy import func, select

    from promptgym.evaluation.cache import ResponseCache, responses
    from promptgym.store.runs import RunStore, calls
    from store_writers import evaluator_writer

    store_url, cache_url = urls
    store = RunStore(store_url)
    run_ids = [store.create_run("race", "evaluators", {}) for _ in range(3)]
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(3)
        with context.Pool(3) as pool:
            asked = pool.starmap(evaluator_writer, [(store_url, cache_url, rid, 30, barrier) for rid in run_ids])
    keys = set().union(*map(set, asked))
    assert len(keys) == 30 and all(len(a) == len(set(a)) for a in asked)
    cache = ResponseCache(cache_url)
    with cache.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(responses)).scalar_one() == 30
    with store.engine.connect() as conn:
        for rid, mine in zip(run_ids, asked):
            uncached = conn.execute(select(calls.c.key).where(calls.c.run_id == rid, calls.c.cached.is_(False))
                                    ).scalars().all()
            cached = conn.execute(select(calls.c.key).where(calls.c.run_id == rid, calls.c.cached.is_(True))
                                  ).scalars().all()
            assert sorted(uncached) == sorted(mine)  # its own calls, each once
            assert len(uncached) + len(cached) == 30 and not set(uncached) & set(cached)
    # stored once: a fourth writer now asks the model nothing
    with context.Manager() as manager:
        with context.Pool(1) as pool:
            late = store.create_run("race", "late", {})
            assert pool.starmap(evaluator_writer, [(store_url, cache_url, late, 30, manager.Barrier(1))]) == [[]]
