"""The run store: plain records, no knowledge of optimizers or models.

The tables below are what the code reads and writes; the database gets them from the Alembic
revisions in ``store/migrations/store/versions`` (applied on open), and a test checks the two agree.
JSON columns are Text on every database, so a store moves between SQLite and PostgreSQL unchanged.

Tables: runs (config, status, result), candidates (prompt, parents, operation), scores (per split,
per example, with the soft evidence of choice tasks), calls (the usage ledger: one row per model call, cached or not), artifacts (method
state such as a trained policy, as JSON).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text, func,
                        insert, select, update)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from promptgym.errors import PromptgymError
from promptgym.store import migrations
from promptgym.store.db import insert_new, make_engine, reason, shown_url, upsert
from promptgym.store.lease import LeaseLost, Owner, holder_state

metadata = MetaData()

SELECT_ROLE = "select"  # the ledger role of final selection's calls (task-model calls)
CALIBRATION_ROLE = "calibration"  # content-free calls that read a prompt's label prior (task-model calls)

runs = Table(
    "runs", metadata,
    Column("run_id", String(32), primary_key=True),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    Column("method", String(64), nullable=False),
    Column("dataset", Text, nullable=False),
    Column("status", String(16), nullable=False),  # running | finished | failed
    Column("config", Text, nullable=False),
    Column("best_candidate", String(32)),
    Column("best_score", Float),
    Column("result", Text),
    # the lease (store.lease): who runs the run now and when it last said so
    Column("owner_host", String(255)),
    Column("owner_pid", Integer),
    Column("owner_token", String(32)),
    Column("heartbeat", Float),
)
LEASE_COLUMNS = ("owner_host", "owner_pid", "owner_token", "heartbeat")
candidates = Table(
    "candidates", metadata,
    Column("run_id", String(32), primary_key=True),
    Column("candidate_id", String(32), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("prompt", Text, nullable=False),
    Column("instruction", Text, nullable=False),
    Column("parents", Text, nullable=False),
    Column("operation", String(64), nullable=False),
    Column("created", Float, nullable=False),
    # One place in the run's order per candidate, even with many writers (add_candidate retries).
    Index("uq_candidates_run_seq", "run_id", "seq", unique=True),
)
scores = Table(
    "scores", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), nullable=False, index=True),
    Column("candidate_id", String(32), nullable=False),
    Column("split", String(16), nullable=False),
    Column("n", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("per_example", Text, nullable=False),  # {"example_id": score, ...}
    Column("predictions", Text, nullable=False),
    Column("created", Float, nullable=False),
    # Soft evidence of a choice task scored by log-probability, JSON {"example_id": value}: the right
    # option's probability and its margin over the best wrong option (revision 0005). NULL for
    # generated answers and in rows written before.
    Column("probability", Text, nullable=True),
    Column("margin", Text, nullable=True),
)
calls = Table(
    "calls", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), nullable=False, index=True),
    Column("key", String(64), nullable=False),
    Column("role", String(16), nullable=False),  # task | optimizer
    Column("kind", String(16), nullable=False),  # generate | score | embed
    Column("cached", Boolean, nullable=False),
    Column("charged", Boolean, nullable=False),  # counts against the search budget
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("created", Float, nullable=False),
    # Faults met on the way to this call's answer, JSON kind -> count ("failed": the backend gave up);
    # NULL when none. Added after the table (revision 0003): stores from before get it on open.
    Column("faults", Text, nullable=True),
)
artifacts = Table(
    "artifacts", metadata,
    Column("run_id", String(32), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("data", Text, nullable=False),
    Column("created", Float, nullable=False),
)


@dataclass
class Usage:
    """Language-model calls (generate, score) and their tokens; embeddings are counted apart."""

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    embeddings: int = 0
    cached_embeddings: int = 0


def _held(token: str | None) -> tuple[Any, ...]:
    """The WHERE clause of a write that only the lease holding ``token`` may make (none without)."""
    return () if token is None else (runs.c.owner_token == token,)


CANDIDATE_INSERT_ATTEMPTS = 50  # writers racing for one run's next seq: each lost race is one retry


class RunStore:
    def __init__(self, url: str):
        self.url = url
        self.shown_url = shown_url(url)  # for messages: no password
        self.engine = make_engine(url)
        try:
            migrations.migrate(self.engine, migrations.STORE)
        except SQLAlchemyError as exc:
            raise PromptgymError(f"run store {self.shown_url}: cannot open ({reason(exc)})") from None

    # -- runs ---------------------------------------------------------------------------------
    def create_run(self, method: str, dataset: str, config: dict[str, Any], owner: Owner | None = None) -> str:
        run_id = uuid.uuid4().hex[:12]
        now = time.time()
        held = {} if owner is None else dict(owner_host=owner.host, owner_pid=owner.pid,
                                              owner_token=owner.token, heartbeat=now)
        with self.engine.begin() as conn:
            conn.execute(insert(runs).values(
                run_id=run_id, created=now, updated=now, method=method, dataset=dataset,
                status="running", config=json.dumps(config), **held))
        return run_id

    # -- the lease (store.lease) -----------------------------------------------------------------
    def claim(self, run_id: str, owner: Owner, lease: float) -> dict[str, Any] | None:
        """Take the run if nobody holds it or its holder is gone (lease expired, or a dead pid on
        this host); None on success, else the live holder's row (owner_host, owner_pid,
        heartbeat). A compare-and-set on the token seen: of two claimers one wins."""
        for _ in range(3):
            row = self.get_run(run_id)
            if holder_state(row, lease) == "live" and row["owner_token"] != owner.token:
                return row
            seen = runs.c.owner_token.is_(None) if row["owner_token"] is None else runs.c.owner_token == row["owner_token"]
            with self.engine.begin() as conn:
                done = conn.execute(update(runs).where(runs.c.run_id == run_id, seen).values(
                    owner_host=owner.host, owner_pid=owner.pid, owner_token=owner.token,
                    heartbeat=time.time(), status="running", updated=time.time())).rowcount
            if done:
                return None
        return self.get_run(run_id)

    def heartbeat(self, run_id: str, token: str) -> bool:
        """Refresh the lease; False if another process holds the run now."""
        with self.engine.begin() as conn:
            return bool(conn.execute(update(runs).where(runs.c.run_id == run_id, runs.c.owner_token == token)
                                     .values(heartbeat=time.time())).rowcount)

    def release(self, run_id: str, token: str) -> None:
        """Give the run up (finished, failed or interrupted); the owner's host and pid stay, for the record."""
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.run_id == run_id, runs.c.owner_token == token)
                         .values(owner_token=None, heartbeat=None))

    def get_run(self, run_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.run_id == run_id)).mappings().first()
        if row is None:
            raise PromptgymError(f"no run '{run_id}' in {self.shown_url} (see: promptgym runs)")
        out = dict(row)
        out["config"] = json.loads(out["config"])
        out["result"] = json.loads(out["result"]) if out["result"] else None
        return out

    def list_runs(self, lease: float | None = None, method: str | None = None, dataset: str | None = None,
                  since: float | None = None, with_result: bool = False) -> list[dict[str, Any]]:
        """Newest first. With ``lease`` (seconds), a ``running`` run whose holder is gone (lease
        expired, dead pid, or nobody) is listed as ``interrupted``. Filters: ``method`` (exact),
        ``dataset`` (a substring), ``since`` (created at or after this time). ``with_result``: each
        row also has the run's summary (``result``, None until it finishes)."""
        columns = [runs.c.run_id, runs.c.method, runs.c.dataset, runs.c.status, runs.c.best_score, runs.c.created,
                   *(runs.c[c] for c in LEASE_COLUMNS)]
        query = select(*columns, *([runs.c.result] if with_result else [])).order_by(runs.c.created.desc())
        if method is not None:
            query = query.where(runs.c.method == method)
        if dataset is not None:
            query = query.where(runs.c.dataset.contains(dataset, autoescape=True))
        if since is not None:
            query = query.where(runs.c.created >= since)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        out = []
        for r in rows:
            row = dict(r)
            if lease is not None and row["status"] == "running" and holder_state(row, lease) != "live":
                row["status"] = "interrupted"
            if with_result:
                row["result"] = json.loads(row["result"]) if row["result"] else None
            out.append(row)
        return out

    def runs_with_cache(self, cache_url: str) -> list[dict[str, Any]]:
        """Runs whose config names this response cache (run_id, status), newest first: how a bench
        finds its cell's run (one cache per cell). The text match only narrows the scan; the
        parsed config decides."""
        needle = json.dumps(cache_url)
        with self.engine.connect() as conn:
            rows = conn.execute(select(runs.c.run_id, runs.c.status, runs.c.config)
                                .where(runs.c.config.contains(needle, autoescape=True))
                                .order_by(runs.c.created.desc())).all()
        return [dict(run_id=r[0], status=r[1]) for r in rows if json.loads(r[2]).get("cache_url") == cache_url]

    def set_status(self, run_id: str, status: str, token: str | None = None) -> bool:
        """Set the run's status; with ``token``, only while that lease holds the run, checked in the
        same statement: a process stopped past its lease whose run another process took over (and
        perhaps finished) must not mark it failed. False when nothing was written."""
        with self.engine.begin() as conn:
            return bool(conn.execute(update(runs).where(runs.c.run_id == run_id, *_held(token))
                                     .values(status=status, updated=time.time())).rowcount)

    def finish_run(self, run_id: str, best_candidate: str, best_score: float,
                   result: dict[str, Any], token: str | None = None) -> bool:
        """Store the run's summary; with ``token``, only while that lease holds the run (as
        ``set_status``). False when nothing was written."""
        with self.engine.begin() as conn:
            return bool(conn.execute(update(runs).where(runs.c.run_id == run_id, *_held(token)).values(
                status="finished", updated=time.time(), best_candidate=best_candidate,
                best_score=best_score, result=json.dumps(result))).rowcount)

    # -- candidates and scores -------------------------------------------------------------------
    def add_candidate(self, run_id: str, candidate_id: str, prompt: dict[str, Any],
                      parents: list[str], operation: str) -> None:
        """Idempotent: a candidate proposed again (e.g. on resume, or by another writer) keeps its
        first record. One statement reads the run's next seq and inserts (ON CONFLICT on the
        candidate's key does nothing). On PostgreSQL the writers of one run first queue on its row
        (``FOR UPDATE``), so each reads the seq the one before wrote; SQLite runs one write at a
        time anyway. Should two writers still read the same next seq, they collide on the unique
        (run, seq) index and the loser tries again."""
        next_seq = (select(func.coalesce(func.max(candidates.c.seq) + 1, 0))
                    .where(candidates.c.run_id == run_id).scalar_subquery())
        statement = insert_new(self.engine, candidates, ("run_id", "candidate_id")).values(
            run_id=run_id, candidate_id=candidate_id, seq=next_seq, prompt=json.dumps(prompt),
            instruction=prompt.get("instruction", ""), parents=json.dumps(parents),
            operation=operation, created=time.time())
        for attempt in range(CANDIDATE_INSERT_ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    if self.engine.dialect.name == "postgresql":  # writers of one run queue on its row
                        conn.execute(select(runs.c.run_id).where(runs.c.run_id == run_id).with_for_update())
                    conn.execute(statement)
                return
            except IntegrityError:
                if attempt == CANDIDATE_INSERT_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # the winners' commits go first

    def candidates(self, run_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(candidates).where(candidates.c.run_id == run_id)
                                .order_by(candidates.c.seq)).mappings().all()
        return [dict(r, prompt=json.loads(r["prompt"]), parents=json.loads(r["parents"])) for r in rows]

    def add_score(self, run_id: str, candidate_id: str, split: str, score: float,
                  per_example: dict[str, float], predictions: dict[str, str],
                  probability: dict[str, float | None] | None = None,
                  margin: dict[str, float | None] | None = None) -> None:
        """One score row; ``probability`` and ``margin`` (example id -> value) only for choice tasks
        scored by log-probability."""
        with self.engine.begin() as conn:
            conn.execute(insert(scores).values(
                run_id=run_id, candidate_id=candidate_id, split=split, n=len(per_example),
                score=score, per_example=json.dumps(per_example), predictions=json.dumps(predictions),
                created=time.time(), probability=None if probability is None else json.dumps(probability),
                margin=None if margin is None else json.dumps(margin)))

    def scores(self, run_id: str) -> list[dict[str, Any]]:
        """The run's score rows in order; ``probability`` and ``margin`` are None where none were
        stored (generated answers, and stores older than revision 0005)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(scores).where(scores.c.run_id == run_id)
                                .order_by(scores.c.id)).mappings().all()
        return [dict(r, per_example=json.loads(r["per_example"]), predictions=json.loads(r["predictions"]),
                     probability=json.loads(r["probability"]) if r["probability"] else None,
                     margin=json.loads(r["margin"]) if r["margin"] else None) for r in rows]

    # -- the usage ledger --------------------------------------------------------------------------
    def add_calls(self, run_id: str, rows: list[dict[str, Any]], token: str | None = None) -> None:
        """Append ledger rows. With ``token`` (the run's lease), the rows are written only while that
        lease holds the run: the same transaction first refreshes the lease's heartbeat on the run's
        row, and if that finds another token (the process was stopped past its lease and the run
        taken over) nothing is written and ``LeaseLost`` is raised. The heartbeat thread alone would
        notice only at its next beat, after a resumed process had written again."""
        if not rows:
            return
        now = time.time()
        with self.engine.begin() as conn:
            if token is not None and not conn.execute(update(runs).where(
                    runs.c.run_id == run_id, runs.c.owner_token == token).values(heartbeat=now)).rowcount:
                raise LeaseLost(self._taken_over(conn, run_id))
            conn.execute(insert(calls), [dict(r, run_id=run_id, created=now,
                                              faults=json.dumps(r["faults"], sort_keys=True) if r.get("faults") else None)
                                         for r in rows])

    def _taken_over(self, conn: Any, run_id: str) -> str:
        """The one line for a process that lost its run: who holds it now, if anyone."""
        row = conn.execute(select(runs.c.status, runs.c.owner_pid, runs.c.owner_host, runs.c.owner_token)
                           .where(runs.c.run_id == run_id)).first()
        who = f" (pid {row[1]} on host {row[2]})" if row is not None and row[1] is not None else ""
        state = f"; it is {row[0]} now" if row is not None and not row[3] else ""
        return (f"run {run_id}: another process{who} took this run over after this one's lease lapsed (it was "
                f"stopped or stalled){state}; stopping without touching it")

    def lost_message(self, run_id: str) -> str:
        """What a process that lost its lease (``LeaseLost``) says about the run."""
        with self.engine.connect() as conn:
            return self._taken_over(conn, run_id)

    def call_rows(self, run_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(calls).where(calls.c.run_id == run_id)
                                .order_by(calls.c.id)).mappings().all()
        return [dict(r) for r in rows]

    def fault_counts(self, run_id: str) -> dict[str, int]:
        """Faults over the run's calls by kind (``failed``: calls the backend gave up on)."""
        with self.engine.connect() as conn:
            blobs = conn.execute(select(calls.c.faults).where(calls.c.run_id == run_id,
                                                              calls.c.faults.is_not(None))).scalars().all()
        total: dict[str, int] = {}
        for blob in blobs:
            for kind, n in json.loads(blob).items():
                total[kind] = total.get(kind, 0) + int(n)
        return dict(sorted(total.items()))

    def charged_calls(self, run_id: str, phase: str | None = None) -> int:
        """Uncached calls that drew on the budget, over every attempt of the run (for resume);
        ``phase`` "search" or "select" counts one phase (final selection's rows have role
        ``select``), so a resumed search meets the same budget meter as the killed one."""
        where = [calls.c.run_id == run_id, calls.c.cached.is_(False), calls.c.charged.is_(True)]
        if phase is not None:
            where.append((calls.c.role == SELECT_ROLE) if phase == "select" else (calls.c.role != SELECT_ROLE))
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(calls).where(*where)).scalar_one()

    def usage(self, run_id: str, role: str | None = None) -> Usage:
        """Language-model usage (embedding rows are in the ledger but not counted here)."""
        language_model = calls.c.kind != "embed"
        query = select(
            func.count(),
            func.coalesce(func.sum(calls.c.prompt_tokens), 0),
            func.coalesce(func.sum(calls.c.completion_tokens), 0),
            func.coalesce(func.sum(calls.c.seconds), 0.0),
        ).where(calls.c.run_id == run_id, calls.c.cached.is_(False), language_model)
        cached = select(func.count()).where(calls.c.run_id == run_id, calls.c.cached.is_(True), language_model)
        if role:
            query = query.where(calls.c.role == role)
            cached = cached.where(calls.c.role == role)
        with self.engine.connect() as conn:
            n, p_tok, c_tok, secs = conn.execute(query).one()
            n_cached = conn.execute(cached.select_from(calls)).scalar_one()
        return Usage(calls=n, cached_calls=n_cached, prompt_tokens=int(p_tok),
                     completion_tokens=int(c_tok), seconds=float(secs))

    def finished_runs(self, method: str, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent finished runs of ``method``, newest first: config and result."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(runs.c.config, runs.c.result).where(
                runs.c.method == method, runs.c.status == "finished", runs.c.result.is_not(None))
                .order_by(runs.c.created.desc()).limit(limit)).all()
        return [dict(config=json.loads(c), result=json.loads(r)) for c, r in rows]

    def timed_calls(self, task_model: str, optimizer_model: str, limit: int = 5000) -> list[dict[str, Any]]:
        """This store's most recent uncached language-model calls made by these models (a task
        role's by ``task_model``, the optimizer's by ``optimizer_model``, as the runs' configs name
        them): method, role, kind, seconds, completion_tokens. What a projection reads speeds from."""
        with self.engine.connect() as conn:
            configs = conn.execute(select(runs.c.run_id, runs.c.config, runs.c.method)).all()
        task_runs, optimizer_runs = [], []
        method_of = {run_id: method for run_id, _, method in configs}
        for run_id, blob, _ in configs:
            config = json.loads(blob)
            if config.get("task_model") == task_model:
                task_runs.append(run_id)
            if config.get("optimizer_model") == optimizer_model:
                optimizer_runs.append(run_id)
        if not task_runs and not optimizer_runs:
            return []
        by_model = ((calls.c.role != "optimizer") & calls.c.run_id.in_(task_runs)) | (
            (calls.c.role == "optimizer") & calls.c.run_id.in_(optimizer_runs))
        query = (select(calls.c.run_id, calls.c.role, calls.c.kind, calls.c.seconds, calls.c.completion_tokens)
                 .where(calls.c.cached.is_(False), calls.c.kind != "embed", calls.c.seconds > 0, by_model)
                 .order_by(calls.c.id.desc()).limit(limit))
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [dict(method=method_of[r["run_id"]], role=r["role"], kind=r["kind"], seconds=r["seconds"],
                     completion_tokens=r["completion_tokens"]) for r in rows]

    # -- method state --------------------------------------------------------------------------------
    def put_artifact(self, run_id: str, name: str, data: Any) -> None:
        """Insert or replace, in one statement: two writers of one artifact never collide."""
        with self.engine.begin() as conn:
            conn.execute(upsert(self.engine, artifacts, ("run_id", "name"),
                                dict(run_id=run_id, name=name, data=json.dumps(data), created=time.time())))

    def get_artifact(self, run_id: str, name: str) -> Any | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(artifacts.c.data).where(
                artifacts.c.run_id == run_id, artifacts.c.name == name)).first()
        return json.loads(row[0]) if row else None
