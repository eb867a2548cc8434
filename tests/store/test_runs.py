"""RunStore: runs, candidates (idempotent), scores, the calls ledger, usage, artifacts."""

from __future__ import annotations

import pytest

from promptgym.errors import PromptgymError
from promptgym.store.runs import RunStore
from promptgym.tasks.prompt import Prompt


@pytest.fixture
def store(tmp_path):
    return RunStore(f"sqlite:///{tmp_path / 'deep' / 'runs.sqlite'}")


def _call(role="task", kind="score", cached=False, charged=True, p=10, c=0, s=0.5, key="k"):
    return dict(key=key, role=role, kind=kind, cached=cached, charged=charged, prompt_tokens=p,
                completion_tokens=c, seconds=s)


def test_create_get_and_finish_a_run(store):
    run_id = store.create_run("ape", "data.jsonl", {"budget": 40, "params": {"a": [1, 2]}})
    run = store.get_run(run_id)
    assert run["status"] == "running" and run["method"] == "ape" and run["dataset"] == "data.jsonl"
    assert run["config"] == {"budget": 40, "params": {"a": [1, 2]}}
    assert run["result"] is None and run["best_score"] is None
    store.finish_run(run_id, "abc123", 0.75, {"best_score": 0.75, "stats": {"x": 1}})
    run = store.get_run(run_id)
    assert run["status"] == "finished" and run["best_candidate"] == "abc123"
    assert run["best_score"] == 0.75 and run["result"] == {"best_score": 0.75, "stats": {"x": 1}}
    assert run["updated"] >= run["created"]


def test_unknown_run_is_a_user_error(store):
    with pytest.raises(PromptgymError, match="no run 'nope'"):
        store.get_run("nope")


def test_list_runs_newest_first(store):
    ids = [store.create_run(m, f"d{m}", {}) for m in ("ape", "opro", "grips")]
    listed = store.list_runs()
    assert [r["run_id"] for r in listed] == ids[::-1]
    assert [r["method"] for r in listed] == ["grips", "opro", "ape"]
    assert set(listed[0]) >= {"run_id", "method", "dataset", "status", "best_score", "created"}
    assert len(set(ids)) == 3


def test_list_runs_filters_by_method_dataset_and_time_and_reads_the_result(store):
    first = store.create_run("ape", "data/reviews_100%.jsonl", {})
    second = store.create_run("opro", "bigbench:multiemo", {})
    store.finish_run(second, "c", 0.5, {"test_best": 0.75})
    assert [r["run_id"] for r in store.list_runs(method="ape")] == [first]
    assert [r["run_id"] for r in store.list_runs(dataset="100%")] == [first]
    assert [r["run_id"] for r in store.list_runs(dataset="_100")] == [first]
    assert store.list_runs(dataset="s%") == []  # LIKE wildcards in the text are literal
    created = {r["run_id"]: r["created"] for r in store.list_runs()}
    assert [r["run_id"] for r in store.list_runs(since=created[second])] == [second]
    results = {r["run_id"]: r["result"] for r in store.list_runs(with_result=True)}
    assert results == {first: None, second: {"test_best": 0.75}}
    assert "result" not in store.list_runs()[0]


def test_set_status(store):
    run_id = store.create_run("ape", "d", {})
    store.set_status(run_id, "failed")
    assert store.get_run(run_id)["status"] == "failed"


def test_runs_persist_across_store_objects(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    run_id = RunStore(url).create_run("ape", "d", {"seed": 3})
    assert RunStore(url).get_run(run_id)["config"] == {"seed": 3}


def test_candidates_are_idempotent_and_ordered(store):
    run_id = store.create_run("ape", "d", {})
    a, b = Prompt("First."), Prompt("Second.")
    store.add_candidate(run_id, a.id, a.to_dict(), [], "initial")
    store.add_candidate(run_id, b.id, b.to_dict(), [a.id], "ape:induce")
    store.add_candidate(run_id, a.id, a.to_dict(), ["other"], "again")  # kept as first recorded
    cands = store.candidates(run_id)
    assert [c["candidate_id"] for c in cands] == [a.id, b.id]
    assert [c["seq"] for c in cands] == [0, 1]
    assert cands[0]["operation"] == "initial" and cands[0]["parents"] == []
    assert cands[1]["parents"] == [a.id] and cands[1]["instruction"] == "Second."
    assert Prompt.from_dict(cands[1]["prompt"]) == b
    other = store.create_run("ape", "d", {})
    store.add_candidate(other, a.id, a.to_dict(), [], "initial")  # same prompt, other run: separate
    assert len(store.candidates(other)) == 1 and store.candidates(other)[0]["seq"] == 0


def test_scores(store):
    run_id = store.create_run("ape", "d", {})
    store.add_score(run_id, "c1", "train", 0.5, {"e1": 1.0, "e2": 0.0}, {"e1": "pos", "e2": "neg"})
    store.add_score(run_id, "c1", "test", 1.0, {"t1": 1.0}, {"t1": "pos"})
    rows = store.scores(run_id)
    assert [(r["split"], r["n"], r["score"]) for r in rows] == [("train", 2, 0.5), ("test", 1, 1.0)]
    assert rows[0]["per_example"] == {"e1": 1.0, "e2": 0.0}
    assert rows[0]["predictions"] == {"e1": "pos", "e2": "neg"}
    assert store.scores(store.create_run("ape", "d", {})) == []


def test_calls_ledger_usage_and_charged_calls(store):
    run_id = store.create_run("ape", "d", {})
    store.add_calls(run_id, [])  # nothing to do
    store.add_calls(run_id, [
        _call(role="task", p=10, s=0.5),
        _call(role="optimizer", kind="generate", p=20, c=7, s=1.0),
        _call(role="task", cached=True, charged=False, p=0, s=0.0),
        _call(role="task", charged=False, p=5, s=0.25),  # held-out evaluation
        _call(role="task", kind="embed", charged=False, p=9, s=0.5),  # not a language-model call
        _call(role="task", kind="embed", cached=True, charged=False, p=0, s=0.0),
    ])
    store.add_calls(store.create_run("ape", "d", {}), [_call()])  # another run's call
    assert len(store.call_rows(run_id)) == 6
    assert store.call_rows(run_id)[1]["role"] == "optimizer"
    assert store.charged_calls(run_id) == 2
    usage = store.usage(run_id)
    assert (usage.calls, usage.cached_calls, usage.prompt_tokens, usage.completion_tokens) == (3, 1, 35, 7)
    assert usage.seconds == pytest.approx(1.75)
    task = store.usage(run_id, role="task")
    assert (task.calls, task.cached_calls, task.prompt_tokens) == (2, 1, 15)
    opt = store.usage(run_id, role="optimizer")
    assert (opt.calls, opt.cached_calls, opt.completion_tokens) == (1, 0, 7)


def test_usage_of_a_run_without_calls_is_zero(store):
    usage = store.usage(store.create_run("ape", "d", {}))
    assert (usage.calls, usage.cached_calls, usage.prompt_tokens, usage.seconds) == (0, 0, 0, 0.0)


def test_artifacts_put_get_and_overwrite(store):
    run_id = store.create_run("ape", "d", {})
    assert store.get_artifact(run_id, "policy") is None
    store.put_artifact(run_id, "policy", {"weights": [0.5, 1.5], "step": 3})
    assert store.get_artifact(run_id, "policy") == {"weights": [0.5, 1.5], "step": 3}
    store.put_artifact(run_id, "policy", {"step": 4})
    assert store.get_artifact(run_id, "policy") == {"step": 4}
    assert store.get_artifact(store.create_run("ape", "d", {}), "policy") is None


def test_unwritable_location_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PromptgymError):
        RunStore(f"sqlite:///{blocker / 'sub' / 'runs.sqlite'}")
