"""Many writer processes on one run store and one cache: SQLite vs PostgreSQL.

    PYTHONPATH=src python benchmarks/store_writers.py            # 1, 2, 4, 8 writers, ~1 min on 2 cores

Each writer (``tests/store_writers.py``) is its own process with its own connections, and for
``--rounds`` rounds adds a candidate that every writer adds too (one record must result), a
candidate of its own with a score and a ledger row, and a cache answer for a key every writer
stores: 5 rows written per round; then all writers claim the same fresh runs (one winner each).
Every configuration starts on a fresh database (the writers' first opens race on the migrations).
Counted afterwards: rows lost, rows doubled, candidate seq gaps or repeats, cache answers not kept
whole, runs without exactly one lease winner. Rows per second: all rows written over the slowest
writer's time from the barrier to its last write (opening and process start-up not included).

PostgreSQL: a throwaway server from Debian's binaries (``tests/postgres_server.py``, as the tests
start it: fsync off), or ``--postgres URL`` of a server of yours (a fresh database per
configuration is created there: the role needs CREATEDB). Writes
benchmarks/results/store-writers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from store_writers import run_writers  # noqa: E402

FAULTS = ("candidates_lost", "candidates_doubled", "seq_faults", "scores_lost", "scores_doubled", "calls_lost",
          "calls_doubled", "cache_lost", "cache_doubled", "cache_mixed", "leases_without_one_winner",
          "leases_held_by_another")


def _fresh_postgres(base_url: str) -> str:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base_url)
    name = "bench_" + uuid.uuid4().hex[:10]
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", default="1,2,4,8")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--postgres", default=None, help="URL of a server to use instead of a throwaway one")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "store-writers.json"))
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.writers.split(",")]

    server = None
    base = args.postgres
    if base is None:
        from postgres_server import PostgresServer

        server = PostgresServer().start()
        base = server.url()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="promptgym-writers-") as tmp:
            for writers in counts:
                for database in ("sqlite", "postgresql"):
                    if database == "sqlite":
                        folder = Path(tmp) / f"w{writers}"
                        store_url, cache_url = f"sqlite:///{folder / 'runs.sqlite'}", f"sqlite:///{folder / 'cache.sqlite'}"
                    else:
                        store_url = cache_url = _fresh_postgres(base)
                    result = dict(database=database, **run_writers(store_url, cache_url, writers, args.rounds))
                    rows.append(result)
                    print(f"{database:10s} writers {writers}: {result['rows']} rows in {result['seconds']:.2f} s, "
                          f"{result['rows_per_second']:.0f} rows/s, faults {sum(result[k] for k in FAULTS)}",
                          flush=True)
    finally:
        if server is not None:
            server.stop()
    out = dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), cpus=os.cpu_count(),
               load_average=[round(x, 2) for x in os.getloadavg()], machine=platform.platform(),
               postgres="throwaway server, fsync off" if server is not None else "given URL",
               rounds=args.rounds, rows_per_round=5, results=rows,
               total_faults=sum(r[k] for r in rows for k in FAULTS))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"faults over all configurations: {out['total_faults']}; written {args.out}")
    return out


if __name__ == "__main__":
    main()
