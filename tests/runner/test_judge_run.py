"""A run scored by a rubric judge (``--reward judge:RUBRIC.md``), on scripted models where the
truth is known: the task model answers formally only when the instruction says "formal", and the
scripted judge gives 5 only to formal answers. Checked: the run's scores, the ledger's roles, the
budget's charge, the cache's replay, resume (with the rubric file edited meanwhile), the summary's
judge record and what a bad combination says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from promptgym import api
from promptgym.errors import PromptgymError
from promptgym.models.scripted import ScriptedBackend, request_text
from promptgym.paths import default_store_url
from promptgym.runner.backends import using
from promptgym.runner.setup import prepare
from promptgym.store.runs import RunStore
from support import formal_proposal as propose, judge_grade as grade
from promptgym.tasks.judge import RubricJudge
from promptgym.testing import RecordingBackend

RUBRIC = "A good answer is formal: it starts with Kindly and uses no slang."
CASUAL = ["gonna be late", "cant come tmrw", "thx a lot", "wanna meet", "see ya", "no worries", "whats up",
          "gotta go", "u ok", "lemme know", "kinda tired", "sounds good", "my bad", "got it", "nah thanks",
          "yep sure", "omg wow", "brb", "ttyl", "idk yet"]


def answer(request) -> str:
    instruction = request_text(request).split("Input:")[0].lower()
    return "Kindly note that I agree." if "formal" in instruction else "yeah ok lol"




@pytest.fixture
def files(tmp_path) -> tuple[Path, Path]:
    data = tmp_path / "casual.jsonl"
    data.write_text("".join(json.dumps({"input": c, "target": f"A formal version of '{c}'."}) + "\n" for c in CASUAL))
    rubric = tmp_path / "rubric.md"
    rubric.write_text(RUBRIC)
    return data, rubric


def models(judge: ScriptedBackend | None = None) -> dict[str, ScriptedBackend]:
    return {"t": ScriptedBackend(reply=answer, name="t"), "o": ScriptedBackend(reply=propose, name="o"),
            "j": judge or ScriptedBackend(reply=grade, name="j")}


def run(data: Path, rubric: Path, backends: dict, **kw) -> api.RunResult:
    options = dict(method="ape", budget=80, train_size=6, test_size=6, dev_size=0, seed=1, task_model="t",
                   optimizer_model="o", judge_model="j", reward=f"judge:{rubric}", prompt="Rewrite the input.",
                   judge_scoring="generate", quiet=True, backends=backends)
    return api.optimize(str(data), **{**options, **kw})


def test_a_judged_run_finds_the_formal_prompt_and_charges_the_judge(files):
    data, rubric = files
    backends = models()
    result = run(data, rubric, backends)
    s = result.summary
    assert (s["initial_score"], s["test_initial"]) == (0.0, 0.0)  # the start answers casually: 1 of 5
    assert (s["best_score"], s["test_best"]) == (1.0, 1.0) and "formal" in s["best_prompt"]
    store = RunStore(default_store_url())
    rows = store.call_rows(result.run_id)
    made = [r for r in rows if not r["cached"]]
    judged = [r for r in made if r["role"] == "judge"]
    assert len(judged) == backends["j"].calls > 0 and {r["kind"] for r in judged} == {"generate"}
    assert any(r["charged"] for r in judged) and any(not r["charged"] for r in judged)  # search / held out
    assert s["budget_used"] == sum(r["charged"] for r in made) <= 80
    assert s["budget_used"] == backends["t"].calls + backends["o"].calls + backends["j"].calls - sum(
        not r["charged"] for r in made)
    per_example = [r for r in store.scores(result.run_id) if r["split"] == "test" and r["candidate_id"] ==
                   result.best_prompt.id][-1]["per_example"]
    assert list(per_example.values()) == [1.0] * 6  # the judge's score is the example's score
    judge = s["judge"]
    assert judge["model"] == "scripted:j" and judge["rubric"] == str(rubric) and judge["unparsed"] == 0
    assert judge["calls"] == len(judged) and judge["answers"] >= 12
    config = store.get_run(result.run_id)["config"]
    assert config["judge"]["rubric"] == RUBRIC and config["judge_model"] == "j"
    assert config["reward"] == f"judge:{rubric}"


def test_the_same_run_again_is_answered_by_the_cache(files):
    data, rubric = files
    first = run(data, rubric, models())
    again = models()
    second = run(data, rubric, again)
    assert (again["t"].calls, again["o"].calls, again["j"].calls) == (0, 0, 0)
    assert second["test_best"] == first["test_best"] and second["best_prompt"] == first["best_prompt"]
    roles = {r["role"] for r in RunStore(default_store_url()).call_rows(second.run_id) if r["cached"]}
    assert "judge" in roles


def test_a_killed_run_resumes_with_the_same_judge_and_rubric(files, tmp_path, monkeypatch):
    data, rubric = files
    monkeypatch.setenv("PROMPTGYM_HOME", str(tmp_path / "reference"))
    reference = models()
    whole = run(data, rubric, reference)
    monkeypatch.setenv("PROMPTGYM_HOME", str(tmp_path / "killed"))
    with pytest.raises(KeyboardInterrupt):
        run(data, rubric, models(RecordingBackend(reply=grade, name="j", interrupt_after=5)))
    run_id = RunStore(default_store_url()).list_runs()[0]["run_id"]
    rubric.write_text("Give every answer 1.")  # edited meanwhile: the run keeps the rubric it started with
    texts: list[str] = []
    resumed = api.resume(run_id, quiet=True, backends=models(RecordingBackend(reply=grade, name="j", texts=texts)))
    assert texts and all(RUBRIC in t for t in texts)
    for key in ("best_prompt", "best_score", "test_initial", "test_best", "budget_used"):
        assert resumed[key] == whole[key], key
    made = [r for r in RunStore(default_store_url()).call_rows(run_id) if not r["cached"] and r["role"] == "judge"]
    assert len(made) == reference["j"].calls  # no judge call twice, none lost


def test_the_reports_show_judge_calls_apart(files, tmp_path, capsys):
    data, rubric = files
    result = run(data, rubric, models())
    page = api.report(result.run_id, out=tmp_path / "r.html").read_text()
    assert "search: judging answers" in page and "held-out evaluation: judging (not charged)" in page
    from promptgym.report import summary_table

    summary_table(result.summary)
    assert f"judge: scripted:j scored {result['judge']['answers']} distinct answers" in capsys.readouterr().out


def test_the_shipped_style_example_is_judged_by_default(tmp_path):
    with using(models()):
        setup = prepare(dict(method="ape", budget=50, seed=0, prompt=None, train_size=5, test_size=5, dev_size=0,
                             task_model="t", optimizer_model="o", judge_model="j", layout="chat", normalize="none",
                             scoring=None, params={}, fields={}, dataset="example:formal-rewrite"))
    assert isinstance(setup.task.metric, RubricJudge) and setup.task.metric.source == "example:formal-rewrite"
    assert setup.config["judge"]["rubric"] == setup.task.metric.rubric  # stored with the run


@pytest.mark.parametrize("kw, says", [
    (dict(reward=None, dataset="example:sentiment"), "--judge-model needs a judge reward"),
    (dict(judge_model=None, dataset="example:sentiment"), "has options (a choice task"),
    (dict(length_penalty=10), "--length-penalty and a judge reward"),
    (dict(judge_order="random"), "judge order 'random'"),
])
def test_a_bad_combination_is_one_line_and_stores_no_run(files, kw, says):
    data, rubric = files
    dataset = kw.pop("dataset", str(data))
    reward = kw.pop("reward", f"judge:{rubric}")
    with pytest.raises(PromptgymError, match=re.escape(says)):
        api.optimize(dataset, method="ape", budget=20, train_size=4, test_size=2, dev_size=0, task_model="t",
                     optimizer_model="o", **{"judge_model": "j", **kw}, reward=reward, quiet=True,
                     backends=models())
    assert RunStore(default_store_url()).list_runs() == []


def test_final_selection_charges_its_judge_calls_to_its_own_meter(files):
    data, rubric = files
    judge_keys: list[str] = []
    backends = models(RecordingBackend(reply=grade, name="j", keys=judge_keys))
    result = run(data, rubric, backends, budget=150, dev_size=6, select_k=2)
    s = result.summary
    assert s["selection"]["enabled"] and s["budget_used"] <= 150
    rows = [r for r in RunStore(default_store_url()).call_rows(result.run_id) if not r["cached"]]
    select = [r for r in rows if r["role"] == "select"]
    assert all(r["charged"] for r in select) and s["selection"]["calls"] == len(select)
    # the race's judge calls have role select (the phase's meter), so a resumed search meets its own
    judged_in_race = [r for r in select if r["key"] in set(judge_keys)]
    assert judged_in_race and len(judged_in_race) < len(select)
    assert s["budget_used"] == sum(r["charged"] for r in rows)
    assert s["dev_best"] == 1.0 and s["test_best"] == 1.0


def formal_digits(prompt: str, option: str) -> float:
    """A scripted judge's log-probability of each digit: 5 likeliest for a formal answer, 1 otherwise."""
    given = re.search(r"<<<ANSWER>>>\n(.*?)\n<<<END ANSWER>>>", prompt, re.S).group(1)
    return 0.0 if option.strip() == ("5" if given.startswith("Kindly") else "1") else -4.0


def test_a_judge_that_gives_log_probabilities_is_read_by_them_and_the_run_stores_how(files):
    data, rubric = files
    judge = ScriptedBackend(option_logprob=formal_digits, name="j")
    result = run(data, rubric, models(judge), judge_scoring=None)
    s = result.summary
    assert s["judge"]["scoring"] == "logprob" and s["judge"]["unparsed"] == 0
    rows = [r for r in RunStore(default_store_url()).call_rows(result.run_id) if r["role"] == "judge"]
    assert rows and {r["kind"] for r in rows} == {"score"}
    assert 0.95 < s["test_best"] <= 1.0 and s["test_initial"] < 0.05  # the expected digit, near 5 and near 1
    assert RunStore(default_store_url()).get_run(result.run_id)["config"]["judge"]["scoring"] == "logprob"


def test_a_judge_without_log_probabilities_generates_and_logprob_is_refused(files):
    data, rubric = files
    judge = ScriptedBackend(reply=grade, name="j")
    judge.supports_scoring = False  # as a chat API without log-probabilities
    assert run(data, rubric, models(judge), judge_scoring=None)["judge"]["scoring"] == "generate"
    with pytest.raises(PromptgymError, match="gives no log-probabilities: use --judge-scoring generate"):
        run(data, rubric, models(judge), judge_scoring="logprob")


@pytest.mark.parametrize("method", ["opro", "protegi"])
def test_a_method_that_spends_its_whole_budget_leaves_final_selection_enough_for_the_judge(files, method):
    data, rubric = files
    result = run(data, rubric, models(), method=method, budget=90, dev_size=4, select_k=1, train_size=4,
                 test_size=4, judge_order="both")
    s = result.summary
    assert s["selection"]["enabled"] and s["selection"]["reserve"] == 2 * 4 * 3  # 2 prompts x 4 examples x 3 calls
    assert s["budget_used"] <= 90 and s["selection"]["calls"] <= s["selection"]["reserve"]
