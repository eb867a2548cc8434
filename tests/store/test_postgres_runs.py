"""``promptgym`` end to end with the run store and the cache on PostgreSQL (the server the tests
start): optimize, replay from the cache, runs, show, report, resume of a finished, an interrupted
and a killed run; wrong password and unreachable server in one line, no password printed or stored."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from promptgym import api
from promptgym.cli import main
from promptgym.runner.backends import forget_given
from promptgym.store.runs import RunStore, calls

from support import RecordingBackend

LABELS = ("positive", "negative", "neutral", "ambivalent")
SCRIPTED = ["--task-model", "scripted", "--optimizer-model", "scripted"]


@pytest.fixture
def dataset(tmp_path) -> str:
    path = tmp_path / "reviews.jsonl"
    with path.open("w") as handle:
        for i in range(40):
            handle.write(json.dumps({"input": f"Review {i}: the stay was {LABELS[i % 4]}.", "target": LABELS[i % 4]}) + "\n")
    return str(path)


@pytest.fixture
def urls(postgres_server, monkeypatch):
    store_url, cache_url = postgres_server.create_database(), postgres_server.create_database()
    monkeypatch.setenv("PROMPTGYM_CACHE", cache_url)
    return store_url, cache_url


def _run(*args: str):
    result = CliRunner().invoke(main, list(args))
    return result


def _last_json(result):
    assert result.exit_code == 0, result.stderr + result.stdout
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_optimize_runs_show_report_resume_on_postgresql(urls, postgres_server, dataset, tmp_path):
    store_url, cache_url = urls
    args = ["--store", store_url, "optimize", *SCRIPTED, "--dataset", dataset, "--method", "ape", "--budget", "30",
            "--train-size", "10", "--test-size", "20", "--json"]
    first = _last_json(_run(*args))
    assert first["llm_calls"] > 0 and first["budget_used"] <= 30
    second = _last_json(_run(*args))  # the same run again: every answer from the PostgreSQL cache
    assert second["llm_calls"] == 0 and second["cached_calls"] >= first["llm_calls"]
    assert (second["best_prompt"], second["test_best"]) == (first["best_prompt"], first["test_best"])

    listed = _last_json(_run("--store", store_url, "runs", "--json"))
    assert [r["run_id"] for r in listed] == [second["run_id"], first["run_id"]]
    assert {r["status"] for r in listed} == {"finished"}
    shown = _run("--store", store_url, "show", first["run_id"])
    assert shown.exit_code == 0 and first["run_id"] in shown.stdout
    page = tmp_path / "run.html"
    reported = _run("--store", store_url, "report", first["run_id"], "-o", str(page))
    assert reported.exit_code == 0, reported.output
    assert first["run_id"] in page.read_text()
    assert _last_json(_run("--store", store_url, "resume", first["run_id"], "--json")) == first

    store = RunStore(store_url)
    store.set_status(first["run_id"], "interrupted")  # as if killed before it finished
    resumed = _last_json(_run("--store", store_url, "resume", first["run_id"], "--json"))
    assert (resumed["best_prompt"], resumed["test_best"], resumed["llm_calls"], resumed["budget_used"]) == (
        first["best_prompt"], first["test_best"], first["llm_calls"], first["budget_used"])
    assert store.get_run(first["run_id"])["status"] == "finished"
    # no password in what is stored
    password = postgres_server.password
    assert password not in json.dumps(store.get_run(first["run_id"])["config"])
    assert store.get_run(first["run_id"])["config"]["cache_url"] is None  # from PROMPTGYM_CACHE: not stored


def test_a_killed_run_resumes_on_postgresql_without_repeating_a_completed_call(urls, postgres_server, dataset,
                                                                                tmp_path):
    store_url, cache_url = urls
    options = dict(dataset=dataset, method="ape", budget=30, train_size=10, test_size=20, task_model="scripted",
                   optimizer_model="scripted", store_url=store_url, cache_url=cache_url)
    reference = api.optimize(**dict(options, store_url=f"sqlite:///{tmp_path / 'ref.sqlite'}",
                                    cache_url=f"sqlite:///{tmp_path / 'ref-cache.sqlite'}")).summary

    before: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        api.optimize(**options, backends={"scripted": RecordingBackend(keys=before, interrupt_after=25)})
    store = RunStore(store_url)
    [killed] = store.list_runs()
    assert killed["status"] == "interrupted" and len(before) == 25
    config = store.get_run(killed["run_id"])["config"]
    assert config["cache_url"] == cache_url.replace(f":{postgres_server.password}@", "@")  # no password stored
    forget_given()  # as a new process: the password comes from PROMPTGYM_CACHE

    after: list[str] = []
    resumed = api.resume(killed["run_id"], store_url=store_url,
                         backends={"scripted": RecordingBackend(keys=after)}).summary
    assert not set(before) & set(after)  # every completed call came back from the cache
    for key in ("best_prompt", "test_initial", "test_best", "budget_used", "llm_calls"):
        assert resumed[key] == reference[key], key
    with store.engine.connect() as conn:
        keys = conn.execute(select(calls.c.key).where(calls.c.run_id == killed["run_id"],
                                                      calls.c.cached.is_(False))).scalars().all()
    assert len(keys) == len(set(keys)) == len(before) + len(after)


def _assert_one_line_error(result, contains: str, password: str) -> None:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("promptgym: error:") and contains in lines[0], result.stderr
    assert "Traceback" not in result.output and password not in result.output


def test_a_wrong_password_or_no_server_is_one_line_without_the_password(postgres_server):
    database = postgres_server.create_database().rsplit("/", 1)[1]
    wrong = postgres_server.url(database, password="not-the-password-42")
    result = _run("--store", wrong, "runs")
    _assert_one_line_error(result, "password authentication failed", "not-the-password-42")
    assert f"run store postgresql://promptgym:***@127.0.0.1:{postgres_server.port}/{database}: cannot open" in result.stderr

    from postgres_server import _free_port

    nobody = f"postgresql://promptgym:secret-pw-77@127.0.0.1:{_free_port()}/x"
    _assert_one_line_error(_run("--store", nobody, "runs"), "cannot open (connection failed", "secret-pw-77")
