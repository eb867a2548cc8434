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
