"""Final selection in the runner, on the scripted model (plumbing and accounting; whether the guard
picks right is tested on known truth in tests/evaluation/test_selection.py)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptgym import api
from promptgym.cli import main
from promptgym.models.scripted import ScriptedBackend
from promptgym.store.runs import RunStore

from support import RecordingBackend, noisy_scripted, write_reviews



@pytest.fixture
def dataset(tmp_path) -> str:
    return write_reviews(tmp_path, 200)


def _store() -> RunStore:
    return RunStore(f"sqlite:///{Path(os.environ['PROMPTGYM_HOME']) / 'runs.sqlite'}")


def _run(dataset: str, **kw):
    args = dict(method="opro", budget=200, seed=0, train_size=10, test_size=20, task_model="scripted",
                optimizer_model="scripted")
    return api.optimize(dataset, **{**args, **kw})


def test_selection_is_paid_from_its_reserve_and_counted_apart(dataset):
    result = _run(dataset)
    s = result.summary
    # half of the budget (100) pays for 50 dev examples x (1 finalist + the start)
    assert s["dev_size"] == 50 and s["selection"]["enabled"] and s["selection"]["reserve"] == 100
    store = _store()
    search, select = (store.charged_calls(result.run_id, phase=p) for p in ("search", "select"))
    assert search <= 100 and 0 < select <= 100 and s["budget_used"] == search + select <= 200
    assert s["selection"]["calls"] == select
    record = s["selection"]
    assert record["candidates"][0]["rank"] == -1 and record["candidates"][0]["dev_n"] == 50  # the start
    assert s["dev_initial"] == record["candidates"][0]["dev_score"]
    stored = {r["candidate_id"]: r["n"] for r in store.scores(result.run_id) if r["split"] == "select"}
    assert stored == {c["candidate_id"]: c["dev_n"] for c in record["candidates"]}  # one row each, all rounds
    assert isinstance(s["kept_start"], bool) and s["verdict"]


def _opinion_reads_the_label() -> dict[str, ScriptedBackend]:
    """Scripted scores under which an instruction that mentions the opinion answers with the label
    the review names, and any other (the start: "Read the input and choose the correct label.")
    answers by a hash: one of OPRO's scripted proposals ("Label the opinion expressed in the input.")
    is then truly better, on dev and on test."""

    def logprob(prompt: str, option: str) -> float:
        instruction, _, rest = prompt.partition("Input:")
        if "opinion" in instruction.lower() and re.search(rf"\b{option.strip()}\b", rest):
            return 0.0
        return -(int(hashlib.sha256(f"{prompt}|{option}".encode()).hexdigest()[:6], 16) % 1000) / 200

    return {"scripted": ScriptedBackend(option_logprob=logprob)}


def test_a_kept_start_is_returned_with_no_test_difference(dataset):
    s = _run(dataset).summary
    assert s["kept_start"] is True  # no scripted proposal is better than the start here
    assert s["best_prompt"] == s["initial_prompt"] and s["test_delta"] == 0.0
    assert s["test_interval"] == [0.0, 0.0] and s["verdict"].startswith("kept your prompt")
    assert s["method_best_prompt"] and s["test_method_best"] is not None


def test_a_better_candidate_is_returned_with_its_test_comparison(dataset):
    s = _run(dataset, backends=_opinion_reads_the_label()).summary
    assert s["kept_start"] is False and "opinion" in s["best_prompt"].lower()
    assert s["test_delta"] == pytest.approx(s["test_best"] - s["test_initial"]) and s["test_delta"] > 0.3
    low, high = s["test_interval"]
    assert 0 < low <= s["test_delta"] <= high and 0 <= s["test_p_value"] < 0.01
    assert s["verdict"].startswith("better than your prompt on test")


def test_a_run_killed_after_selection_resumes_to_the_same_result_for_free(dataset):
    first = _run(dataset).summary
    _store().set_status(first["run_id"], "interrupted")
    again = api.resume(first["run_id"]).summary
    for key in ("best_prompt", "selection", "kept_start", "test_best", "test_delta", "budget_used", "llm_calls"):
        assert again[key] == first[key], key


def test_selection_off_is_said_not_silent(dataset):
    s = _run(dataset, budget=30).summary  # half of 30 pays for 7 dev examples x 2 prompts: too few
    assert not s["selection"]["enabled"] and s["dev_size"] == 0
    assert "--budget 30 pays for 7 dev examples" in s["verdict"]
    assert s["best_prompt"] == s["method_best_prompt"]
    assert "--select-k 0" in _run(dataset, select_k=0).summary["verdict"]


def test_a_dev_split_the_budget_cannot_pay_for_is_a_one_line_error(dataset):
    out = CliRunner().invoke(main, ["optimize", "--dataset", dataset, "--task-model", "scripted",
                                    "--optimizer-model", "scripted", "--budget", "100", "--dev-size", "50"])
    assert out.exit_code == 2 and out.stderr.count("\n") == 1
    assert "--budget 100 cannot pay for final selection on 50 dev examples (2 prompts x 50 = 100" in out.stderr
    assert _store().list_runs() == []  # refused before a run was recorded


# -- soft evidence, the chance of better and the detectable gain -------------------------------------------

def test_a_kept_start_says_how_large_a_gain_dev_could_have_noticed(dataset):
    s = _run(dataset, backends=noisy_scripted()).summary
    assert s["kept_start"] and s["test_share_better"] is None  # your prompt back: nothing to compare
    d = s["detectable"]
    assert d["test"] == "mcnemar-exact" and d["dev_size"] == 50 and 0 < d["discordance"] <= 1
    n = len(s["selection"]["candidates"]) - 1
    assert d["level"] == pytest.approx(0.1 / n) and d["finalists"] == n and d["power"] == 0.8
    assert d["budget_needed"] == 200 - 100 + (n + 1) * d["dev_needed"]  # the search's 100 calls, a call per raced prompt
    assert d["sentence"].startswith(f"a gain under +{d['gain']:.2f} would not have been noticed with 50 dev examples; "
                                    f"raise --budget to about {d['budget_needed']}")
    assert json.loads(json.dumps(s.to_dict(full=False)))["detectable"] == d


def test_a_returned_prompt_comes_with_the_share_of_resamples_it_wins(dataset):
    for seed, sign in ((2, 1), (1, -1)):  # unguarded: the method's pick, better and worse on test
        s = _run(dataset, method="grips", seed=seed, select_k=0, backends=noisy_scripted()).summary
        assert s["best_prompt"] != s["initial_prompt"] and s["detectable"] is None
        assert s["test_delta"] * sign > 0 and (s["test_share_better"] - 0.5) * sign > 0.15


def test_select_statistic_probability_runs_on_the_stored_soft_evidence(dataset):
    result = _run(dataset, select_statistic="probability", select_margin=0.05, select_k=3, backends=noisy_scripted())
    record = result.summary["selection"]
    assert record["statistic"] == "probability" and record["margin"] == 0.05
    assert record["p_value"] is not None and record["p_accuracy"] is not None
    assert all("dev_statistic" in c for c in record["candidates"])
    rows = [r for r in _store().scores(result.run_id) if r["split"] in ("select", "test")]
    assert rows and all(r["probability"] and r["margin"] and set(r["probability"]) == set(r["per_example"])
                        for r in rows)
    assert result.summary["detectable"] is None or result.summary["detectable"]["test"] == "wilcoxon-signed-rank"


def test_a_soft_statistic_on_a_task_without_probabilities_is_refused_before_the_run(dataset, tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"input": f"question {i}", "target": f"answer {i}"}) + "\n" for i in range(80)))
    with pytest.raises(api.PromptgymError, match="--select-statistic margin needs a choice task scored by "
                                                 "log-probability.*a generation task"):
        _run(str(data), select_statistic="margin")
    with pytest.raises(api.PromptgymError, match="choice task scored by generation"):
        _run(dataset, select_statistic="probability", scoring="generate")
    assert _store().list_runs() == []


def test_the_cli_takes_the_statistic_and_the_margin(dataset):
    out = CliRunner().invoke(main, ["optimize", "--dataset", dataset, "--task-model", "scripted", "--optimizer-model",
                                    "scripted", "--method", "ape", "--budget", "120", "--train-size", "8",
                                    "--test-size", "10", "--select-statistic", "margin", "--select-margin", "0.02",
                                    "--json", "--quiet"])
    assert out.exit_code == 0, out.stderr
    s = json.loads(out.stdout.splitlines()[-1])
    assert s["selection"]["statistic"] == "margin" and s["selection"]["margin"] == 0.02
    assert {"test_share_better", "detectable"} <= set(s)
    bad = CliRunner().invoke(main, ["optimize", "--dataset", dataset, "--select-statistic", "f1"])
    assert bad.exit_code == 2 and "f1" in bad.stderr


# -- sequential final selection ----------------------------------------------------------------------------

def _noisy(keys: list[str], interrupt_after: int | None = None):
    """``backends=``: a scripted model (as ``noisy_scripted``: each prompt answers each example its own
    way) that logs the requests it answers and can be killed before call ``interrupt_after + 1``."""
    import hashlib

    def logprob(prompt: str, option: str) -> float:
        return -(int(hashlib.sha256(f"{prompt}|{option}".encode()).hexdigest()[:6], 16) % 1000) / 200

    return {"scripted": RecordingBackend(keys=keys, interrupt_after=interrupt_after, option_logprob=logprob)}


def test_sequential_selection_races_on_the_pool_within_its_reserve_and_a_kill_mid_race_resumes_to_the_same_result(
        dataset, tmp_path):
    reference_store = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    reference = _run(dataset, select_sequential=True, store_url=reference_store,
                     cache_url=f"sqlite:///{tmp_path / 'reference-cache.sqlite'}", backends=_noisy([]))
    s = reference.summary
    record, race = s["selection"], s["selection"]["race"]
    assert record["sequential"] is True and record["reserve"] == 100  # the fixed race's reserve: 4 x 25
    assert race["pool"] == 50 and race["stop"]  # what 100 calls pay for with two prompts (the data has 170) in ("decided", "futility", "reserve", "pool")
    assert race["race_calls"] <= 100 and 0 < record["calls"] <= race["race_calls"]
    assert s["dev_size"] == race["dev_n"] == record["candidates"][0]["dev_n"] > 0
    assert s["kept_start"] == (race["stop"] != "decided") and s["detectable"] is None
    assert RunStore(reference_store).get_run(s["run_id"])["config"]["select_sequential"] is True

    rows = RunStore(reference_store).call_rows(s["run_id"])
    before_race = next(i for i, r in enumerate(rows) if r["role"] == "select")
    kill_at = before_race + record["calls"] // 2  # half-way through the race
    before: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        _run(dataset, select_sequential=True, backends=_noisy(before, interrupt_after=kill_at))
    [killed] = _store().list_runs()
    assert killed["status"] == "interrupted" and _store().charged_calls(killed["run_id"], phase="select") > 0
    after: list[str] = []
    resumed = api.resume(killed["run_id"], backends=_noisy(after)).summary
    assert not set(before) & set(after)  # the killed race's calls came back from the cache
    for key in ("best_prompt", "kept_start", "dev_size", "dev_initial", "dev_best", "test_best", "test_delta"):
        assert resumed[key] == s[key], key
    assert resumed["selection"]["race"] == race and resumed["budget_used"] == s["budget_used"]


def test_the_cli_runs_sequential_selection_and_prints_where_it_stopped(dataset):
    out = CliRunner().invoke(main, ["optimize", "--dataset", dataset, "--task-model", "scripted", "--optimizer-model",
                                    "scripted", "--method", "ape", "--budget", "120", "--train-size", "8",
                                    "--test-size", "10", "--select-sequential", "--quiet"])
    assert out.exit_code == 0, out.stderr
    [line] = [x for x in out.stdout.splitlines() if x.startswith("sequential race: ")]
    race = _store().finished_runs("ape")[0]["result"]["selection"]["race"]
    assert line == f"sequential race: {race['sentence']}"
