"""``promptgym compare``: two runs side by side, and a paired test of their returned prompts only
when both were tested on the same examples."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from promptgym import api
from promptgym.cli import main
from promptgym.evaluation import stats
from promptgym.paths import default_store_url
from promptgym.store.runs import RunStore
from support import write_reviews

SCRIPTED = ["--task-model", "scripted", "--optimizer-model", "scripted"]


@pytest.fixture
def dataset(tmp_path) -> str:
    return write_reviews(tmp_path, 60)


def _run(dataset: str, *extra: str) -> dict:
    result = CliRunner().invoke(main, ["optimize", "--dataset", dataset, *SCRIPTED, "--budget", "30",
                                       "--train-size", "8", "--test-size", "30", "--dev-size", "0", "--json",
                                       "--quiet", *extra])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _test_scores(run_id: str) -> dict[str, float]:
    store = RunStore(default_store_url())
    best = store.get_run(run_id)["best_candidate"]
    (row,) = {json.dumps(r["per_example"], sort_keys=True) for r in store.scores(run_id)
              if r["candidate_id"] == best and r["split"] == "test"}
    return json.loads(row)


def test_same_test_split_gets_the_paired_comparison_of_the_returned_prompts(dataset):
    a = _run(dataset, "--method", "ape", "--prompt", "Label the review.")
    b = _run(dataset, "--method", "opro", "--param", "steps=2")
    record = api.compare(a["run_id"], b["run_id"])
    assert record["a"]["run_id"] == a["run_id"] and record["b"]["method"] == "opro"
    assert record["a"]["initial_prompt"] == "Label the review." and record["b"]["best_prompt"] == b["best_prompt"]
    for side, summary in ((record["a"], a), (record["b"], b)):
        for key in ("llm_calls", "prompt_tokens", "test_initial", "test_best", "verdict", "budget"):
            assert side[key] == summary[key]
    scores_a, scores_b = _test_scores(a["run_id"]), _test_scores(b["run_id"])
    assert sorted(scores_a) == sorted(scores_b) and len(scores_a) == 30
    ids = sorted(scores_a)
    expected = stats.compare([scores_a[i] for i in ids], [scores_b[i] for i in ids], "two-sided", seed=0)
    assert record["paired"] == expected.as_dict() and record["paired_note"] is None
    assert record["paired"]["delta"] == pytest.approx(b["test_best"] - a["test_best"])

    cli = CliRunner().invoke(main, ["compare", a["run_id"], b["run_id"], "--json"])
    assert cli.exit_code == 0 and json.loads(cli.stdout) == record
    table = CliRunner().invoke(main, ["compare", a["run_id"], b["run_id"]])
    assert table.exit_code == 0
    assert a["run_id"] in table.stdout and b["run_id"] in table.stdout and "returned prompt" in table.stdout
    assert (f"returned prompts on the same 30 test examples: B - A = {expected.delta:+.3f}, 95% paired bootstrap "
            f"interval [{expected.low:+.3f}, {expected.high:+.3f}], p = {expected.p_value:.3g}") in \
        " ".join(table.stdout.split())


def test_different_test_sets_say_so_and_show_no_paired_numbers(dataset):
    a = _run(dataset, "--seed", "0")
    b = _run(dataset, "--seed", "1")  # another seeded split: other test examples
    record = api.compare(a["run_id"], b["run_id"])
    assert record["paired"] is None
    assert record["paired_note"].startswith("no paired comparison: the test sets differ (A: 30 examples of ")
    table = CliRunner().invoke(main, ["compare", a["run_id"], b["run_id"]])
    assert table.exit_code == 0 and "no paired comparison: the test sets differ" in table.stdout
    assert "B - A" not in table.stdout
    no_test = _run(dataset, "--test-size", "0")
    assert api.compare(a["run_id"], no_test["run_id"])["paired_note"] == (
        f"no paired comparison: no test scores for run {no_test['run_id']}")


def test_an_unfinished_run_cannot_be_compared(dataset):
    a, b = _run(dataset), _run(dataset, "--seed", "1")
    RunStore(default_store_url()).set_status(b["run_id"], "failed")
    result = CliRunner().invoke(main, ["compare", a["run_id"], b["run_id"]])
    assert result.exit_code != 0 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"promptgym: error: run '{b['run_id']}' is failed: only finished runs can be compared "
        f"(finish it first: promptgym resume {b['run_id']})"]


def _stored_run(store: RunStore, scores: dict[str, float], dataset: str = "d.jsonl") -> str:
    """A finished run whose returned prompt has these test scores (written as a run writes them)."""
    run_id = store.create_run("ape", dataset, {"seed": 0})
    store.add_score(run_id, "start", "test", 0.5, {k: 0.5 for k in scores}, {})
    store.add_score(run_id, "best", "test", sum(scores.values()) / len(scores), scores, {})
    store.finish_run(run_id, "best", 0.5, {"run_id": run_id, "method": "ape", "dataset": dataset})
    return run_id


@pytest.mark.parametrize("graded", [False, True])
def test_paired_numbers_are_the_returned_prompts_test_scores_matched_by_example_id(graded):
    store = RunStore(default_store_url())
    ids = [f"ex{i}" for i in range(40)]
    a = {i: float(n % 3 == 0) for n, i in enumerate(ids)}
    b = {i: float(n % 3 != 1) for n, i in enumerate(ids)}  # right more often than a
    if graded:
        a = {i: v * 0.8 + 0.1 for i, v in a.items()}
    # stored in a different order: pairs are matched by id, not by position
    run_a, run_b = _stored_run(store, a), _stored_run(store, dict(reversed(list(b.items()))))
    paired = api.compare(run_a, run_b)["paired"]
    expected = stats.compare([a[i] for i in sorted(ids)], [b[i] for i in sorted(ids)], "two-sided", seed=0)
    assert paired == expected.as_dict()
    assert paired["delta"] == pytest.approx(sum(b.values()) / 40 - sum(a.values()) / 40) and paired["delta"] > 0.1
    assert paired["test"] == ("paired-bootstrap" if graded else "mcnemar-exact") and paired["p_value"] < 0.05
    other = _stored_run(store, b, dataset="other.jsonl")  # the same ids in another dataset are other examples
    assert api.compare(run_a, other)["paired"] is None
