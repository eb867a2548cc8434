"""``--calibrate`` (contextual calibration of choice scores) through the runner, on a scripted model
whose option scores lean to one label whatever the input: the run's numbers, its ledger and
budget, resume, the projection, predict, show, and the one-line refusals. (The prior and the
calibrated argmax are worked by hand in tests/tasks/test_task.py.)"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptgym import api
from promptgym.cli import main
from promptgym.errors import PromptgymError
from promptgym.models.scripted import ScriptedBackend
from promptgym.store.runs import RunStore
from promptgym.testing import RecordingBackend

# P(positive) by input: the content-free inputs give every prompt the prior 0.7 / 0.3, and every
# review leans positive, the negative ones less: uncalibrated all positive, calibrated all right
CONTENT_FREE = {"N/A": 0.8, "": 0.6, "[MASK]": 0.7}


def leaning(prompt: str, option: str) -> float:
    text = prompt.rsplit("Input: ", 1)[1]
    p = CONTENT_FREE[text] if text in CONTENT_FREE else 0.9 if "lovely" in text else 0.6
    return math.log(p if option.strip() == "positive" else 1 - p)


@pytest.fixture
def data(tmp_path) -> str:
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps({"input": f"Review {i}: {'lovely' if i % 2 else 'dull'}.",
                                        "target": "positive" if i % 2 else "negative",
                                        "choices": ["positive", "negative"]}) + "\n" for i in range(120)))
    return str(path)


def _store() -> RunStore:
    return RunStore(f"sqlite:///{Path(os.environ['PROMPTGYM_HOME']) / 'runs.sqlite'}")


def _run(data: str, backend: ScriptedBackend | None = None, **kw):
    args = dict(method="ape", budget=120, seed=0, train_size=10, test_size=20, dev_size=10, select_k=3, task_model="leaning",
                optimizer_model="scripted", quiet=True, calibrate=True,
                backends={"leaning": backend or ScriptedBackend(option_logprob=leaning, name="leaning")})
    return api.optimize(data, **{**args, **kw})


def test_a_calibrated_run_divides_out_the_prior_and_says_so(data):
    calibrated, plain = _run(data).summary, _run(data, calibrate=False).summary  # the first's calls all made
    assert plain["test_initial"] == 0.6 and calibrated["test_initial"] == 1.0  # 0.6: the test's share of positives
    assert plain["calibration"] is None
    record = calibrated["calibration"]
    assert record["content_free_inputs"] == ["N/A", "", "[MASK]"]
    assert record["prior_initial"] == pytest.approx({"positive": 0.7, "negative": 0.3})
    assert record["prior_best"] == pytest.approx({"positive": 0.7, "negative": 0.3})
    store = _store()
    assert store.get_run(calibrated["run_id"])["config"]["calibrate"] is True
    rows = [r for r in store.call_rows(calibrated["run_id"]) if not r["cached"]]
    searched = {s["candidate_id"] for s in store.scores(calibrated["run_id"]) if s["split"].startswith("train-sub")}
    priors = [r for r in rows if r["role"] == "calibration"]
    assert len(priors) == 3 * len(searched) and all(r["charged"] for r in priors)  # each candidate's, once
    # APE never scores your prompt: its prior is read by final selection, in its ledger rows and reserve
    raced = [r for r in rows if r["role"] == "select"]
    assert len(raced) == calibrated["selection"]["calls"] == 2 * 10 + 3  # the start and one finalist on dev
    assert calibrated["selection"]["reserve"] == 4 * (10 + 3)  # k = 3: four entrants, their dev and priors
    assert calibrated["budget_used"] <= 120 and calibrated["stats"]["stopped_by"] == "done"
    assert not [r for r in rows if r["role"] == "calibration" and not r["charged"]]  # held out: all cached


def test_the_summary_and_show_say_the_scores_are_calibrated(data):
    run_id = _run(data).run_id
    out = CliRunner().invoke(main, ["show", run_id])
    assert out.exit_code == 0 and "scores are calibrated" in out.stdout
    assert "scores are calibrated" not in CliRunner().invoke(main, ["show", _run(data, calibrate=False).run_id]).stdout
    printed = CliRunner().invoke(main, ["resume", run_id])  # a finished run: its stored summary, as a run prints it
    assert printed.exit_code == 0, printed.stderr
    assert ("Scores are calibrated: each option's probability divided by the prompt's prior for it, read from the "
            "content-free inputs 'N/A', '', '[MASK]'; the returned prompt's prior: positive 0.70, negative 0.30."
            ) in " ".join(printed.stdout.split())


def test_a_killed_calibrated_run_resumes_to_the_same_result_without_repeating_a_call(data, tmp_path):
    reference = _run(data, store_url=f"sqlite:///{tmp_path / 'ref.sqlite'}",
                     cache_url=f"sqlite:///{tmp_path / 'ref-cache.sqlite'}").summary
    before: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        _run(data, RecordingBackend(keys=before, interrupt_after=12, option_logprob=leaning, name="leaning"))
    [killed] = _store().list_runs()
    assert any(r["role"] == "calibration" for r in _store().call_rows(killed["run_id"]))
    after: list[str] = []
    resumed = api.resume(killed["run_id"], quiet=True, backends={"leaning": RecordingBackend(
        keys=after, option_logprob=leaning, name="leaning")}).summary
    assert not set(before) & set(after)  # what the killed attempt asked came from the cache
    for key in ("best_prompt", "test_initial", "test_best", "budget_used", "calibration", "kept_start"):
        assert resumed[key] == reference[key], key


def test_the_projection_counts_the_priors(data):
    plain = _run(data, calibrate=False, dry_run=True)
    calibrated = _run(data, dry_run=True)
    # APE never scores your prompt in the search: its prior is read for the held-out test
    assert calibrated.heldout.calls == plain.heldout.calls + 3
    # the search has 120 - 52 (selection's reserve, 4 x (10 + 3)); APE plans on 10/13 of it, 52: 4 proposals of
    # 1 + 10 calls, and the rehearsal counts their priors too: 4 x (1 + 10 + 3) = 56 of the 68
    assert calibrated.reserve.calls == 52 and calibrated.adjusted["proposals (num_subsamples x prompts_per_subsample)"]["used"] == 4
    assert calibrated.search.calls == 56 and plain.search.calls == 7 * (1 + 10)  # uncalibrated: 7 in 120 - 40


def test_predict_calibrates_as_the_run_did(data):
    run_id = _run(data).run_id
    backends = {"leaning": ScriptedBackend(option_logprob=leaning, name="leaning")}
    rows = api.predict(run_id, ["Review 500: dull.", "Review 501: lovely."], backends=backends)
    assert [r["prediction"] for r in rows] == ["negative", "positive"]


def test_incompatible_options_are_one_line(data, tmp_path):
    def refused(*args: str) -> str:
        result = CliRunner().invoke(main, ["optimize", *args, "--calibrate", "--task-model", "scripted",
                                           "--optimizer-model", "scripted", "--budget", "40", "--train-size", "6",
                                           "--test-size", "6", "--dev-size", "0", "--quiet"])
        assert result.exit_code != 0 and result.stdout == ""
        [line] = result.stderr.strip().splitlines()
        return line

    assert refused("--dataset", data, "--scoring", "generate") == (
        "promptgym: error: --calibrate needs choices scored by log-probability; --scoring generate answers by "
        "generation: drop one of the two")
    free = tmp_path / "free.jsonl"
    free.write_text("".join(json.dumps({"input": f"q{i}", "target": f"answer {i}"}) + "\n" for i in range(30)))
    assert refused("--dataset", str(free)) == (
        f"promptgym: error: --calibrate needs a choice task (it divides each option's probability by the "
        f"prompt's prior for it); {free} is answered in free text: drop --calibrate")
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps({"input": f"q{i}", "target": "a", "choices": ["a", "b" if i % 2 else "c"]})
                             + "\n" for i in range(30)))
    assert refused("--dataset", str(mixed)).startswith(
        "promptgym: error: --calibrate needs one label set shared by every example")
    assert not _store().list_runs()  # refused before a run was stored


def test_a_task_model_without_log_probabilities_cannot_calibrate(data):
    class Generates(ScriptedBackend):
        supports_scoring = False

    with pytest.raises(PromptgymError, match="the task model leaning gives none"):
        _run(data, Generates(name="leaning"))


def test_final_selection_with_priors_must_fit_the_budget(data):
    with pytest.raises(PromptgymError, match=r"--budget 50 cannot pay for final selection with --calibrate \(4 "
                                             r"prompts x \(10 dev \+ 3 content-free\) = 52 calls\)"):
        _run(data, budget=50)  # 40 would pay for the race uncalibrated
    assert _run(data, budget=50, calibrate=False).summary["selection"]["reserve"] == 40
