"""The held-out check of a judged run (``runner.judge_check``), on scripted models where the truth is
known: the scripted judge gives 5 only to answers that start with "Kindly", and the scripted task
model answers that way only when its instruction says "formal". When that answer ignores the input
the judge is gamed, and the references show it; when it carries the input, judge and references agree."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from promptgym import api
from promptgym.errors import PromptgymError
from promptgym.models.scripted import ScriptedBackend, request_text
from promptgym.paths import default_store_url
from promptgym.report import summary_table
from promptgym.report.html import render_run, run_page_data
from promptgym.report.tables import judge_check_line
from promptgym.store.runs import RunStore
from support import formal_proposal as propose, judge_grade as grade

RUBRIC = "A good answer is formal: it starts with Kindly."
NOTE = re.compile(r"note (\d+)")


def ignoring(request) -> str:
    """Formal and empty of the input under a "formal" instruction, else a faithful rewrite."""
    instruction, _, given = request_text(request).partition("Input:")
    if "formal" in instruction.lower():
        return "Kindly note that I agree."
    return f"This is note {NOTE.search(given).group(1)}."


def carrying(request) -> str:
    """Formal and faithful under a "formal" instruction, else casual."""
    instruction, _, given = request_text(request).partition("Input:")
    if "formal" in instruction.lower():
        return f"Kindly, this is note {NOTE.search(given).group(1)}, formally stated."
    return "yeah ok lol"




@pytest.fixture
def files(tmp_path) -> tuple[Path, Path]:
    data = tmp_path / "notes.jsonl"
    data.write_text("".join(json.dumps({"input": f"hey its note {i} lol", "target": f"This is note {i}, formally "
                                        "stated."}) + "\n" for i in range(20)))
    rubric = tmp_path / "rubric.md"
    rubric.write_text(RUBRIC)
    return data, rubric


def run(files: tuple[Path, Path], answer, **kw) -> api.RunResult:
    data, rubric = files
    backends = {"t": ScriptedBackend(reply=answer, name="t"), "o": ScriptedBackend(reply=propose, name="o"),
                "j": ScriptedBackend(reply=grade, name="j")}
    options = dict(method="ape", budget=80, train_size=6, test_size=8, dev_size=0, seed=1, task_model="t",
                   optimizer_model="o", judge_model="j", reward=f"judge:{rubric}", prompt="Rewrite the input.",
                   judge_scoring="generate", quiet=True, backends=backends)
    return api.optimize(str(data), **{**options, **kw})


def printed(summary, capsys) -> list[str]:
    capsys.readouterr()
    summary_table(summary)
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("judge check:")]


def test_a_judge_gamed_by_a_prompt_that_ignores_the_input_is_flagged_and_the_prompt_kept(files, capsys):
    result = run(files, ignoring)
    s = result.summary
    assert "formal" in s["best_prompt"] and (s["test_initial"], s["test_best"]) == (0.0, 1.0)  # the judge's view
    check = s["judge"]["reference_check"]
    assert check["metric"] == "rouge-l" and check["start"] >= 0.8 and check["returned"] < 0.3
    assert check["delta"] < 0 and check["high"] < 0 and check["flagged"] is True
    assert printed(s, capsys) == [judge_check_line(check)]
    assert judge_check_line(check).startswith("judge check: the returned prompt scores lower against the "
                                              "references (ROUGE-L ")
    assert RunStore(default_store_url()).get_run(result.run_id)["config"]["judge_check"] == "rouge-l"


def test_a_judge_that_agrees_with_the_references_prints_no_warning(files, capsys):
    s = run(files, carrying).summary
    check = s["judge"]["reference_check"]
    assert "formal" in s["best_prompt"] and check["delta"] > 0 and check["flagged"] is False
    assert printed(s, capsys) == []


def test_judge_check_none_skips_it(files, capsys):
    result = run(files, ignoring, judge_check="none")
    assert result["judge"]["reference_check"] is None and printed(result.summary, capsys) == []
    assert RunStore(default_store_url()).get_run(result.run_id)["config"]["judge_check"] == "none"


def test_another_metric_is_used_when_named(files):
    check = run(files, ignoring, judge_check="contains")["judge"]["reference_check"]
    assert check["metric"] == "contains" and (check["start"], check["returned"]) == (0.0, 0.0)
    assert check["flagged"] is False  # no worse by this metric


def test_without_rouge_score_the_check_falls_back_to_token_f1(files, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rouge_score", None)  # as without the metrics extra
    s = run(files, ignoring).summary
    check = s["judge"]["reference_check"]
    assert check["metric"] == "token-f1" and check["flagged"] is True
    assert "(token F1 " in printed(s, capsys)[0]


@pytest.mark.parametrize("kw, says", [
    (dict(judge_check="judge:other.md"), "--judge-check 'judge:other.md': the check scores answers against"),
    (dict(judge_check="no-such-metric"), "reward 'no-such-metric'"),
    (dict(judge_check="rouge-l", reward="token-f1", judge_model=None, judge_scoring=None),
     "--judge-check needs a judge reward"),
])
def test_a_bad_judge_check_is_one_line_and_stores_no_run(files, kw, says):
    with pytest.raises(PromptgymError, match=re.escape(says)):
        run(files, ignoring, **kw)
    assert RunStore(default_store_url()).list_runs() == []


@pytest.mark.parametrize("answer, paragraph", [
    (ignoring, '<p id="judge-check" class="verdict worse">Judge check: the returned prompt scores lower'),
    (carrying, '<p id="judge-check" class="">Judge check: against the test examples'),
])
def test_the_run_page_shows_the_judge_and_its_check_a_warning_only_when_flagged(files, answer, paragraph):
    """The HTML report said nothing of the judge: a gamed judge's run looked like any other there."""
    result = run(files, answer)
    page = render_run(run_page_data(RunStore(default_store_url()), result.run_id))
    check = result["judge"]["reference_check"]
    assert paragraph in page and ("may have been gamed" in page) == check["flagged"]
    assert f"{check['start']:.3f}" in page and f"{check['returned']:.3f}" in page
    assert re.search(r"<td>judge</td><td>\S+ scored \d+ distinct answers against ", page)


def test_a_run_without_a_judge_has_no_judge_check_on_its_page(files):
    plain = run(files, carrying, reward="token-f1", judge_model=None, judge_scoring=None, judge_check=None)
    page = render_run(run_page_data(RunStore(default_store_url()), plain.run_id))
    assert 'id="judge-check"' not in page and "<td>judge</td>" not in page


def test_the_warning_line_reads_as_documented():
    check = dict(metric="rouge-l", start=0.384, returned=0.108, delta=-0.276, low=-0.347, high=-0.207)
    assert judge_check_line(check) == (
        "judge check: the returned prompt scores lower against the references (ROUGE-L 0.384 -> 0.108, "
        "-0.276 [-0.347, -0.207]): the judge may have been gamed; compare the answers before using it")
