"""The answer mode in the runner, on the scripted model: ``--reasoning on`` makes every candidate
reason, ``--reasoning search`` races the reasoning twins in final selection, so that direct against
reasoning is decided on dev; the summary says which mode the returned prompt uses, and a run killed
in the race resumes to the same result. (The race itself is tested on known truth in
tests/evaluation/test_selection.py.)"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptgym import api
from promptgym.cli import main
from promptgym.models.base import GenerationRequest
from promptgym.models.scripted import ScriptedBackend, request_text
from promptgym.runner.final_selection import TWIN_OPERATION
from promptgym.store.runs import RunStore
from promptgym.tasks.prompt import REASONING_LINE

from support import RecordingBackend, write_reviews


@pytest.fixture
def dataset(tmp_path) -> str:
    return write_reviews(tmp_path, 200)  # "Review i: the stay was LABEL." over four labels


def _store() -> RunStore:
    return RunStore(f"sqlite:///{Path(os.environ['PROMPTGYM_HOME']) / 'runs.sqlite'}")


def _run(dataset: str, **kw):
    args = dict(method="opro", budget=200, seed=0, train_size=10, test_size=20, task_model="scripted",
                optimizer_model="scripted", quiet=True)
    return api.optimize(dataset, **{**args, **kw})


def _reasoning_reads_the_review(helps: bool, **recording):
    """Scripted answers under which reasoning is right on every review (``helps``: its reply ends
    with the label the review names) or names no option, while a direct answer is the option of a
    hashed score, right about a quarter of the time."""
    import hashlib

    def reply(request: GenerationRequest) -> str:
        text = request_text(request)
        if REASONING_LINE not in text:
            return ScriptedBackend._default_reply(request)  # the optimizer's proposals
        said = re.search(r"the stay was (\w+)\.", text.rsplit("Input:", 1)[-1]).group(1)
        return f"The guest says the stay was {said}.\nAnswer: {said}" if helps else "I cannot tell.\nAnswer: unclear"

    def logprob(prompt: str, option: str) -> float:
        return -(int(hashlib.sha256(f"{prompt}|{option}".encode()).hexdigest()[:6], 16) % 1000) / 200

    return {"scripted": RecordingBackend(reply=reply, option_logprob=logprob, **recording)}


def test_search_races_the_reasoning_twins_and_returns_reasoning_when_dev_shows_it_better(dataset):
    s = _run(dataset, reasoning="search", backends=_reasoning_reads_the_review(helps=True)).summary
    record = s["selection"]
    assert record["twins"] == 2 and record["reserve"] == 4 * s["dev_size"]  # k 1 + 2 twins + the start
    assert s["answer_mode"] == "reasoning" and s["best_prompt_full"]["reasoning"] is True
    assert s["kept_start"] is False and record["reasoning"]["returned"] == "reasoning"
    assert s["test_best"] == 1.0 and s["test_initial"] < 0.6 and s["verdict"].startswith("better")
    twins = [c for c in _store().candidates(s["run_id"]) if c["operation"] == TWIN_OPERATION]
    assert twins and all(c["prompt"]["reasoning"] is True for c in twins)
    raced = {c["candidate_id"] for c in record["candidates"]}
    assert {c["candidate_id"] for c in twins} <= raced
    rows = {(r["of"], r["mode"]): r for r in record["reasoning"]["raced"]}
    assert rows[("your prompt", "reasoning")]["dev_score"] == 1.0
    assert rows[("your prompt", "direct")]["dev_score"] < 0.6
    assert "the returned prompt reasons before it answers" in record["reasoning"]["sentence"]
    assert s["budget_used"] <= 200


def test_search_keeps_direct_answers_when_reasoning_does_worse_on_dev(dataset):
    s = _run(dataset, reasoning="search", backends=_reasoning_reads_the_review(helps=False)).summary
    assert s["answer_mode"] == "direct" and "reasoning" not in s["best_prompt_full"]
    assert s["selection"]["reasoning"]["returned"] == "direct"
    assert all(r["dev_score"] == 0.0 for r in s["selection"]["reasoning"]["raced"] if r["mode"] == "reasoning")
    assert s["selection"]["reasoning"]["sentence"].endswith("the returned prompt answers directly")


def test_reasoning_on_makes_the_start_and_every_candidate_reason(dataset):
    result = _run(dataset, reasoning="on", reasoning_tokens=64, backends=_reasoning_reads_the_review(helps=True))
    s = result.summary
    assert result.initial_prompt.reasoning and result.best_prompt.reasoning and s["answer_mode"] == "reasoning"
    assert all(c["prompt"].get("reasoning") is True for c in _store().candidates(s["run_id"]))
    kinds = {r["kind"] for r in _store().call_rows(s["run_id"]) if r["role"] in ("task", "select")}
    assert kinds == {"generate"}  # no option is scored by log-probability
    assert s["stats"]["answer_check"]["matched"] == 10  # the start's replies end with an option
    assert s["test_initial"] == 1.0 and "twins" not in s["selection"]
    config = _store().get_run(s["run_id"])["config"]
    assert (config["reasoning"], config["reasoning_tokens"]) == ("on", 64)


def test_reasoning_off_stores_the_config_and_prompts_as_before(dataset):
    s = _run(dataset).summary
    config = _store().get_run(s["run_id"])["config"]
    assert "reasoning" not in config and "reasoning_tokens" not in config and "twins" not in s["selection"]
    assert s["answer_mode"] == "direct" and "reasoning" not in s["initial_prompt_full"]


def test_a_run_killed_in_the_race_of_the_twins_resumes_to_the_same_result_for_free(dataset, tmp_path):
    reference_store = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    reference = _run(dataset, reasoning="search", store_url=reference_store,
                     cache_url=f"sqlite:///{tmp_path / 'reference-cache.sqlite'}",
                     backends=_reasoning_reads_the_review(helps=True, keys=[])).summary
    rows = RunStore(reference_store).call_rows(reference["run_id"])
    twin_calls = [i for i, r in enumerate(rows) if r["role"] == "select" and r["kind"] == "generate"]
    kill_at = twin_calls[len(twin_calls) // 2]  # half-way through the twins' dev answers
    before: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        _run(dataset, reasoning="search", backends=_reasoning_reads_the_review(helps=True, keys=before,
                                                                                 interrupt_after=kill_at))
    [killed] = _store().list_runs()
    assert killed["status"] == "interrupted"
    assert 0 < _store().charged_calls(killed["run_id"], phase="select") < reference["selection"]["calls"]
    after: list[str] = []
    resumed = api.resume(killed["run_id"], backends=_reasoning_reads_the_review(helps=True, keys=after)).summary
    assert not set(before) & set(after)  # what was answered before the kill came from the cache
    for key in ("best_prompt", "best_prompt_full", "answer_mode", "kept_start", "dev_best", "test_best", "budget_used"):
        assert resumed[key] == reference[key], key
    assert resumed["selection"]["reasoning"] == reference["selection"]["reasoning"]


@pytest.mark.parametrize("kw, message", [
    (dict(reasoning="sometimes"), "--reasoning 'sometimes': use one of off, on, search"),
    (dict(reasoning_tokens=64), "--reasoning-tokens needs --reasoning on or search"),
    (dict(reasoning="on", reasoning_tokens=0), "--reasoning-tokens must be a whole number, at least 1"),
    (dict(reasoning="search", select_k=0), r"--reasoning search decides direct vs reasoning on the dev split, in "
                                           r"final selection, which is off \(--select-k 0\)"),
    (dict(reasoning="search", budget=30), "which is off: --budget 30 pays for 3 dev examples"),
    (dict(reasoning="on", calibrate=True), "--calibrate divides each option's probability by the prompt's prior"),
    (dict(reasoning="on", select_statistic="probability"),
     r"--select-statistic probability needs each option's probability, which a reasoning answer does not have"),
])
def test_reasoning_options_that_cannot_work_are_one_line_before_the_run(dataset, kw, message):
    with pytest.raises(api.PromptgymError, match=message):
        _run(dataset, **kw)
    assert _store().list_runs() == []


def test_reasoning_needs_a_choice_task(tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"input": f"question {i}", "target": f"answer {i}"}) + "\n" for i in range(80)))
    with pytest.raises(api.PromptgymError, match="--reasoning on needs a choice task"):
        _run(str(data), reasoning="on")


def test_the_cli_takes_the_mode_and_the_summary_says_which_one_was_returned(dataset):
    args = ["optimize", "--dataset", dataset, "--task-model", "scripted", "--optimizer-model", "scripted",
            "--method", "ape", "--budget", "150", "--train-size", "8", "--test-size", "10", "--reasoning", "search",
            "--reasoning-tokens", "48", "--quiet"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.stderr
    [line] = [x for x in out.stdout.splitlines() if x.startswith("answer mode: ")]
    run = _store().finished_runs("ape")[0]
    assert line == f"answer mode: {run['result']['selection']['reasoning']['sentence']}"
    assert run["config"]["reasoning_tokens"] == 48
    shown = CliRunner().invoke(main, ["show", run["result"]["run_id"]]).stdout
    assert "[reasons first]: it reasons before its answer" in shown  # the legend, there when a candidate reasons
    summary = json.loads(CliRunner().invoke(main, [*args, "--json"]).stdout.splitlines()[-1])
    assert summary["answer_mode"] in ("direct", "reasoning") and summary["selection"]["twins"] == 2
    bad = CliRunner().invoke(main, ["optimize", "--dataset", dataset, "--reasoning", "maybe"])
    assert bad.exit_code == 2 and "maybe" in bad.stderr


def test_search_under_calibration_calibrates_the_direct_prompts_only(dataset):
    result = _run(dataset, reasoning="search", calibrate=True, backends=_reasoning_reads_the_review(helps=True))
    s = result.summary
    assert s["answer_mode"] == "reasoning" and s["calibration"]["prior_initial"]  # the direct start has a prior
    assert s["calibration"]["prior_best"] is None  # the reasoning twin returned has none: no option scores
    calibrated = {r["key"] for r in _store().call_rows(s["run_id"]) if r["role"] == "calibration"}
    assert calibrated and all(r["kind"] == "score" for r in _store().call_rows(s["run_id"]) if r["role"] == "calibration")
