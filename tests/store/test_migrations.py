"""Schemas by Alembic: a fresh database gets the schema the code reads (compared by Alembic's own
autogenerate), files of earlier releases (no version table, columns added by hand) are upgraded
with every row kept, and first opens racing on a fresh database all succeed. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import multiprocessing

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, MetaData, String, Table, create_engine, inspect, select

from promptgym.errors import PromptgymError
from promptgym.evaluation.cache import ResponseCache, _metadata as cache_metadata
from promptgym.models.base import Completion
from promptgym.store import migrations
from promptgym.store.db import make_engine
from promptgym.store.runs import RunStore, metadata as store_metadata


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return request.getfixturevalue("postgres_url")


def _differences(engine, metadata, schema):
    """Alembic's autogenerate diff between the database and ``metadata``, over ``metadata``'s tables
    (the other schema may share the database)."""

    def ours(name, type_, parent_names):
        if type_ == "table":
            return name in metadata.tables
        return type_ == "schema" or parent_names.get("table_name") in metadata.tables

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": schema.version_table,
                                                          "compare_type": True, "include_name": ours})
        return compare_metadata(context, metadata)


def test_a_fresh_database_gets_the_schema_the_code_reads(url):
    store, cache = RunStore(url), ResponseCache(url)
    assert _differences(store.engine, store_metadata, migrations.STORE) == []
    assert _differences(cache.engine, cache_metadata, migrations.CACHE) == []
    with store.engine.connect() as conn:
        assert migrations.current_revision(conn, migrations.STORE) == migrations.STORE.head() == "0005"
        assert migrations.current_revision(conn, migrations.CACHE) == migrations.CACHE.head() == "0002"
    tables = set(inspect(store.engine).get_table_names())
    assert {"promptgym_store_version", "promptgym_cache_version", "alembic_version"} & tables == {
        "promptgym_store_version", "promptgym_cache_version"}


def _old_metadata(drop: dict[str, set[str]]) -> MetaData:
    """The tables as an earlier release's ``create_all`` made them: today's columns less those added
    since (``drop``), their ``index=True`` indexes, no seq index, no version table."""
    old = MetaData()
    for table in [*store_metadata.sorted_tables, *cache_metadata.sorted_tables]:
        Table(table.name, old, *(Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable, index=c.index,
                                        autoincrement=c.autoincrement)
                                 for c in table.columns if c.name not in drop.get(table.name, set())))
    return old


SOFT = {"scores": {"probability", "margin"}}  # revision 0005, made after the last release without Alembic
BEFORE_LEASE = {"runs": {"owner_host", "owner_pid", "owner_token", "heartbeat"}, "calls": {"faults"},
                "responses": {"origin"}, **SOFT}
BEFORE_FAULTS = {"calls": {"faults"}, "responses": {"origin"}, **SOFT}
LAST_RELEASE = {**SOFT}  # every column of then, no version table, no seq index


@pytest.mark.parametrize("drop", [BEFORE_LEASE, BEFORE_FAULTS, LAST_RELEASE], ids=["before-lease", "before-faults",
                                                                                    "last-release"])
def test_a_store_of_an_earlier_release_is_upgraded_with_every_row(url, drop):
    engine = make_engine(url)
    old = _old_metadata(drop)
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(old.tables["runs"].insert().values(
            run_id="old1", created=1.0, updated=2.0, method="ape", dataset="d", status="finished",
            config=json.dumps({"budget": 5}), best_candidate="c2", best_score=0.5, result=json.dumps({"x": 1})))
        for seq, cid in enumerate(["c1", "c2", "c3"]):
            conn.execute(old.tables["candidates"].insert().values(
                run_id="old1", candidate_id=cid, seq=seq, prompt=json.dumps({"instruction": cid}),
                instruction=cid, parents="[]", operation="init", created=float(seq)))
        conn.execute(old.tables["scores"].insert().values(
            run_id="old1", candidate_id="c2", split="dev", n=1, score=0.5, per_example='{"e": 0.5}',
            predictions='{"e": "p"}', created=1.0))
        conn.execute(old.tables["calls"].insert().values(
            run_id="old1", key="k", role="task", kind="generate", cached=False, charged=True, prompt_tokens=3,
            completion_tokens=1, seconds=0.1, created=1.0))
        conn.execute(old.tables["artifacts"].insert().values(run_id="old1", name="a", data='{"s": 1}', created=1.0))
        conn.execute(old.tables["responses"].insert().values(
            key="k", kind="generate", response=json.dumps({"text": "old answer", "prompt_tokens": 3,
                                                          "completion_tokens": 1}), created=1.0))
    engine.dispose()

    store, cache = RunStore(url), ResponseCache(url)
    run = store.get_run("old1")
    assert (run["status"], run["config"], run["result"], run["owner_token"]) == ("finished", {"budget": 5}, {"x": 1}, None)
    assert [(c["candidate_id"], c["seq"]) for c in store.candidates("old1")] == [("c1", 0), ("c2", 1), ("c3", 2)]
    assert [s["per_example"] for s in store.scores("old1")] == [{"e": 0.5}]
    assert [(s["probability"], s["margin"]) for s in store.scores("old1")] == [(None, None)]
    assert store.usage("old1").calls == 1 and store.fault_counts("old1") == {}
    assert store.get_artifact("old1", "a") == {"s": 1}
    assert cache.lookup(["k"]) == {"k": (Completion(text="old answer", prompt_tokens=3, completion_tokens=1), None)}
    assert _differences(store.engine, store_metadata, migrations.STORE) == []
    assert _differences(cache.engine, cache_metadata, migrations.CACHE) == []
    # and the upgraded store takes new rows of every kind
    store.add_candidate("old1", "c4", {"instruction": "c4"}, ["c3"], "mutate")
    assert store.candidates("old1")[-1]["seq"] == 3
    store.add_calls("old1", [dict(key="k2", role="task", kind="generate", cached=False, charged=True,
                                  prompt_tokens=1, completion_tokens=1, seconds=0.0, faults={"http_429": 1})])
    assert store.fault_counts("old1") == {"http_429": 1}
    RunStore(url), ResponseCache(url)  # opening again changes nothing and fails on nothing
    assert len(store.candidates("old1")) == 4


def test_a_store_at_0004_gains_the_soft_evidence_columns_and_its_rows_read_none(url):
    from alembic import command

    engine = make_engine(url)
    with engine.begin() as conn:
        command.upgrade(migrations.STORE.config(conn), "0004")
    with engine.begin() as conn:
        conn.execute(store_metadata.tables["runs"].insert().values(
            run_id="r", created=1.0, updated=1.0, method="ape", dataset="d", status="finished", config="{}"))
        conn.exec_driver_sql("INSERT INTO scores (run_id, candidate_id, split, n, score, per_example, predictions, "
                             "created) VALUES ('r', 'c', 'select', 1, 1.0, '{\"e\": 1.0}', '{\"e\": \"a\"}', 1.0)")
    engine.dispose()
    store = RunStore(url)
    [row] = store.scores("r")
    assert (row["per_example"], row["probability"], row["margin"]) == ({"e": 1.0}, None, None)
    store.add_score("r", "c", "test", 1.0, {"e": 1.0}, {"e": "a"}, probability={"e": 0.7}, margin={"e": 0.4})
    assert [(r["probability"], r["margin"]) for r in store.scores("r")] == [(None, None), ({"e": 0.7}, {"e": 0.4})]
    assert _differences(store.engine, store_metadata, migrations.STORE) == []


def test_an_earlier_release_with_a_repeated_seq_is_renumbered_in_its_order(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    engine = create_engine(url)
    old = _old_metadata(LAST_RELEASE)
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(old.tables["runs"].insert().values(run_id="r", created=1.0, updated=1.0, method="ape",
                                                        dataset="d", status="finished", config="{}"))
        for seq, cid, created in [(0, "a", 1.0), (1, "b", 2.0), (1, "c", 3.0), (2, "d", 4.0)]:
            conn.execute(old.tables["candidates"].insert().values(
                run_id="r", candidate_id=cid, seq=seq, prompt="{}", instruction="", parents="[]",
                operation="init", created=created))
    engine.dispose()
    store = RunStore(url)
    assert [(c["candidate_id"], c["seq"]) for c in store.candidates("r")] == [("a", 0), ("b", 1), ("c", 2), ("d", 3)]


def _open_both(url: str, barrier) -> str:
    barrier.wait()
    RunStore(url), ResponseCache(url)
    return "ok"


def test_first_opens_racing_on_a_fresh_database_all_succeed(url):
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(4)
        with context.Pool(4) as pool:
            assert pool.starmap(_open_both, [(url, barrier)] * 4) == ["ok"] * 4
    engine = make_engine(url)
    with engine.connect() as conn:
        for schema in (migrations.STORE, migrations.CACHE):
            version = Table(schema.version_table, MetaData(), Column("version_num", String(32)))
            assert conn.execute(select(version.c.version_num)).scalars().all() == [schema.head()]
    engine.dispose()


def test_opening_a_store_at_head_takes_no_lock(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    RunStore(url)
    monkeypatch.setattr(migrations, "_locking_engine", lambda engine: pytest.fail("locked a store at head"))
    RunStore(url)


def test_a_store_from_a_newer_release_is_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    store = RunStore(url)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE promptgym_store_version SET version_num = '0099'")
    with pytest.raises(PromptgymError, match=r"store schema is at revision 0099, which this promptgym does not know"):
        RunStore(url)
