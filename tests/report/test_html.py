"""The HTML run page and bench page, without a browser: the data behind them (scripted model, a
real run store) and the escaping of model-written text. The browser test is test_html_chromium.py."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptgym import api
from promptgym.report.html import headline, render_run, result_in_words, run_page_data, word_diff
from promptgym.store.runs import RunStore

LABELS = ("positive", "negative", "neutral", "ambivalent")
HOSTILE = '<script>window.__pwned = 1</script><img src="http://127.0.0.1:9/x.png"> {{ input }} & "quotes"'


def make_run(tmp_path, method: str = "opro", budget: int = 120, hostile: bool = True) -> tuple[RunStore, str]:
    """A finished run on the scripted model (a stand-in: the page's logic, not a quality claim),
    plus, when ``hostile``, a candidate whose text is HTML and a template, as a model could write."""
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"input": f"Review {i}: the stay was {LABELS[i % 4]}.",
                                        "target": LABELS[i % 4]}) + "\n" for i in range(160)))
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    result = api.optimize(dataset=str(data), method=method, budget=budget, train_size=20, dev_size=20,
                          test_size=40, task_model="scripted", optimizer_model="scripted", store_url=url, quiet=True)
    store = RunStore(url)
    if hostile:
        start = store.candidates(result.run_id)[0]
        store.add_candidate(result.run_id, "hostile", dict(start["prompt"], instruction=HOSTILE),
                            [start["candidate_id"]], "test:hostile")
    return store, result.run_id


@given(st.text(max_size=60), st.text(max_size=60))
def test_word_diff_gives_both_texts_back(before, after):
    parts = word_diff(before, after)
    assert "".join(t for op, t in parts if op != "ins") == before
    assert "".join(t for op, t in parts if op != "del") == after


def test_word_diff_marks_the_changed_words_only():
    assert word_diff("Classify the review.", "Classify the short review.") == [
        ("same", "Classify the"), ("ins", " short"), ("same", " review.")]


def test_the_page_data_agrees_with_the_store_and_the_summary(tmp_path):
    store, run_id = make_run(tmp_path, hostile=False)
    data = run_page_data(store, run_id)
    s = data["summary"]
    assert [r["id"] for r in data["table"]] == [c["candidate_id"] for c in store.candidates(run_id)]
    assert [r["role"] for r in data["table"]].count("start") == 1
    # the ledger split by phase adds up to the run's own counts
    assert data["cost"]["total"]["calls"] == s["llm_calls"]
    assert data["cost"]["total"]["cached"] == s["cached_calls"]
    assert data["cost"]["total"]["prompt_tokens"] == s["prompt_tokens"]
    # flips: exactly the test examples where the two compared prompts score differently
    test = {r["candidate_id"]: r["per_example"] for r in store.scores(run_id) if r["split"] == "test"}
    other = data["chosen_id"] if data["chosen_id"] != data["start_id"] else data["pick_id"]
    if other is not None:
        expected = {k for k, v in test[data["start_id"]].items() if test[other][k] != v}
        assert {f["id"] for f in data["flips"]} == expected
        assert all(f["input"] for f in data["flips"])  # a local file: the inputs are shown
    assert "trajectory" in data["figures"] and "lineage" in data["figures"]
    page = render_run(data)
    assert page.count('<tr id="cand-') == len(data["table"])


def test_model_written_text_is_escaped_and_nothing_is_loaded(tmp_path):
    store, run_id = make_run(tmp_path)
    page = render_run(run_page_data(store, run_id))
    assert HOSTILE not in page
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page
    # the page's own script is the only one; no external resource of any kind
    assert len(re.findall(r"<script\b", page)) == 1
    assert not re.search(r"""<(link|iframe|object|embed)\b""", page)
    assert not re.search(r"""\s(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "default-src 'none'" in page


def test_a_run_that_has_not_finished_still_gets_a_page(tmp_path):
    store, run_id = make_run(tmp_path, hostile=False)
    store.set_status(run_id, "running")
    with store.engine.begin() as conn:  # as a killed run has it: no result yet
        from promptgym.store.runs import runs
        conn.execute(runs.update().where(runs.c.run_id == run_id).values(result=None))
    page = render_run(run_page_data(store, run_id))
    assert "has not finished" in page and f"promptgym resume {run_id}" in page


@pytest.mark.parametrize("interval, p, verdict", [
    ((0.02, 0.10), 0.01, "Better than your prompt"), ((-0.05, 0.08), 0.4, "Not distinguishable"),
    ((-0.10, -0.01), 0.03, "Worse than your prompt")])
def test_the_verdict_is_the_paired_tests_and_the_interval_is_detail(interval, p, verdict):
    s = dict(test_initial=0.4, test_best=0.45, test_size=100, test_delta=sum(interval) / 2, test_interval=interval,
             test_p_value=p, kept_start=False, best_prompt_full={"a": 1}, initial_prompt_full={"a": 2})
    assert headline(s)["text"].startswith(verdict) and f"p = {p:.3g}" in headline(s)["text"]
    words = result_in_words(s)
    assert "Supporting detail: the 95% paired bootstrap interval" in words and "disagree" not in words


def test_few_test_examples_get_one_verdict_not_two():
    """Issue 27: 12 test examples, the exact test p = 0.125 but the bootstrap interval below zero:
    one verdict (the paired test's), in the headline with how sure; the interval only as detail."""
    s = dict(test_initial=0.5, test_best=0.25, test_size=12, test_delta=-0.25, test_interval=[-0.5, -0.083],
             test_p_value=0.125, kept_start=False, best_prompt_full={"a": 1}, initial_prompt_full={"a": 2})
    head = headline(s, test_name="exact McNemar test")
    assert head["cls"] == "" and head["text"].startswith("Not distinguishable from your prompt: -0.250 on 12 held-out")
    assert "p = 0.125 (exact McNemar test, two-sided)" in head["text"] and "by chance 12.5% of the time" in head["text"]
    words = result_in_words(s)
    assert "worse" not in words and "below zero" not in words
    assert "the verdict above is the paired test's" in words


def test_kept_start_beside_a_finalist_with_a_higher_dev_score_is_not_clearly_better():
    s = dict(kept_start=True, test_initial=0.4, test_best=0.4, test_size=40,
             selection=dict(enabled=True, level=0.05, p_value=0.21))
    finalists = [dict(rank=-1, seq=0, dev_n=20, dev_score=0.70), dict(rank=0, seq=3, dev_n=20, dev_score=0.75)]
    text = headline(s, finalists)["text"]
    assert "no candidate was clearly better on dev" in text and "beat" not in text
    assert "#3 scored 0.750 on dev against your 0.700; p = 0.21, needed below 0.05" in text
    finalists[1]["dev_score"] = 0.65
    assert "no candidate scored higher on dev" in headline(s, finalists)["text"]


def test_the_run_page_states_the_verdict_once(tmp_path):
    store, run_id = make_run(tmp_path, hostile=False)
    data = run_page_data(store, run_id)
    page = render_run(data)
    verdict = re.search(r'<div class="verdict[^"]*" id="verdict"><strong>(.*?)</strong>', page).group(1)
    assert verdict == data["headline"]["text"].replace("'", "&#39;")
    assert "no candidate beat it" not in page
    assert "two-sided paired p =" not in page  # the old second statement of the same result


def test_your_prompt_is_drawn_at_its_training_score_with_the_held_out_result_beside(tmp_path):
    """Issue 27: APE scores only its own candidates during the search; your prompt was scored on
    the training split after it and must be drawn there (not in the unscored band), as the
    trajectory's baseline, with the held-out test scores beside the training curve."""
    store, run_id = make_run(tmp_path, method="ape", hostile=False)
    data = run_page_data(store, run_id)
    start = next(r for r in data["table"] if r["role"] == "start")
    assert start["train"] == data["summary"]["initial_score"]
    assert "not scored on train" not in data["figures"]["lineage"]
    svg = data["figures"]["trajectory"]
    assert "your prompt (baseline)" in svg and "test, held out" in svg and "seen by the search" in svg


def test_a_live_runs_page_does_not_advise_a_resume_that_would_be_refused(tmp_path):
    import os
    import socket
    import time

    from promptgym.store.runs import runs

    store, run_id = make_run(tmp_path, hostile=False)
    config = dict(store.get_run(run_id)["config"], dev_size=None)  # as given: sized from the budget
    with store.engine.begin() as conn:  # as a run in progress has it: held, heartbeat fresh, no result
        conn.execute(runs.update().where(runs.c.run_id == run_id).values(
            status="running", result=None, owner_token="t", owner_pid=os.getpid(), config=json.dumps(config),
            owner_host=socket.gethostname(), heartbeat=time.time()))
    page = render_run(run_page_data(store, run_id))
    assert "still running" in page and "promptgym resume" not in page
    assert "dev None" not in page and "dev chosen from the budget" in page


def test_kept_start_says_so_with_the_method_pick(tmp_path):
    s = dict(test_initial=0.4, test_best=0.4, test_size=100, kept_start=True, test_method_best=0.43,
             method_best_prompt="x", initial_prompt="y")
    words = result_in_words(s)
    assert "Your prompt was handed back" in words and "+0.030" in words


def test_cli_report_writes_the_file_and_unknown_runs_are_one_line(tmp_path):
    from click.testing import CliRunner

    from promptgym.cli import main

    store, run_id = make_run(tmp_path, hostile=False)
    out = tmp_path / "page.html"
    result = CliRunner().invoke(main, ["--store", store.url, "report", run_id, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<!DOCTYPE html>")
    result = CliRunner().invoke(main, ["--store", store.url, "report", "nope"])
    assert result.exit_code != 0 and result.stderr.count("\n") == 1 and "no run 'nope'" in result.stderr


def test_a_bigbench_run_never_downloads_for_its_page(tmp_path, monkeypatch):
    from promptgym.data import bigbench

    monkeypatch.setattr(bigbench, "download_sdist", lambda *a, **k: pytest.fail("the report downloaded data"))
    from promptgym.report.html import _examples_by_id

    examples, note = _examples_by_id({"dataset": "bigbench:multiemo/all_sentence_en"})
    assert examples or "not on this machine" in note


def test_the_page_says_what_dev_could_detect_and_the_share_of_resamples_won(tmp_path):
    from support import noisy_scripted, write_reviews

    data, url = write_reviews(tmp_path, 200), f"sqlite:///{tmp_path / 'runs.sqlite'}"
    common = dict(budget=200, train_size=10, test_size=20, task_model="scripted", optimizer_model="scripted",
                  store_url=url, backends=noisy_scripted())  # prompts that disagree: a kept start may miss a gain
    kept = api.optimize(data, method="opro", seed=0, select_k=3, **common).summary  # 3 finalists on 25 dev
    assert kept["kept_start"]
    page = render_run(run_page_data(RunStore(url), kept["run_id"]))
    sentence = kept["detectable"]["sentence"]
    assert re.search(r"a gain under \+0\.\d\d would not have been noticed with 25 dev examples; raise --budget to "
                     r"about \d+ \(with --dev-size \d+\) to detect \+0\.\d\d", sentence)
    assert f'<p id="detectable">Your prompt was kept, but that does not prove the candidates were no better: {sentence}.' in page
    assert 'id="share-better"' not in page
    returned = api.optimize(data, method="grips", seed=2, select_k=0, **common).summary
    page = render_run(run_page_data(RunStore(url), returned["run_id"]))
    share = round(returned["test_share_better"] * 100)
    assert f"scored higher than yours in {share}% of 10,000 paired bootstrap resamples" in page
    assert "not a Bayesian probability" in page and 'id="detectable"' not in page
    # GRIPS edits label words: stored as [label, word] pairs, shown as "label: word"
    pairs = [v for c in RunStore(url).candidates(returned["run_id"]) for v in c["prompt"].get("verbalizers") or []]
    assert pairs and f"{pairs[0][0]}: {pairs[0][1]}" in page


def test_a_run_answered_from_the_cache_still_has_a_trajectory(tmp_path):
    """Seen in a screenshot for issue 27: a run replayed wholly from the response cache charged no
    call, and every dot of its trajectory sat at 0 calls."""
    from promptgym.report.trajectory import points_of

    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"input": f"Review {i}: the stay was {LABELS[i % 4]}.",
                                        "target": LABELS[i % 4]}) + "\n" for i in range(160)))
    common = dict(dataset=str(data), method="grips", budget=120, train_size=20, test_size=20, select_k=0,
                  task_model="scripted", optimizer_model="scripted", cache_url=f"sqlite:///{tmp_path / 'c.sqlite'}",
                  quiet=True)
    api.optimize(store_url=f"sqlite:///{tmp_path / 'a.sqlite'}", **common)
    store = RunStore(f"sqlite:///{tmp_path / 'b.sqlite'}")
    run_id = api.optimize(store_url=store.url, **common).run_id
    calls = store.call_rows(run_id)
    assert all(c["cached"] for c in calls if c["role"] == "task")
    xs = [p["calls"] for p in points_of(calls, store.scores(run_id))]
    assert len(xs) > 1 and xs == sorted(xs) and xs[-1] > xs[0] > 0


def test_a_returned_prompt_that_scored_the_same_is_not_called_a_difference():
    s = dict(test_initial=0.25, test_best=0.25, test_size=12, test_delta=0.0, test_p_value=1.0,
             test_interval=[-0.3, 0.3], best_prompt_full={"a": 1}, initial_prompt_full={"a": 2})
    text = headline(s, test_name="exact McNemar test")["text"]
    assert text == ("Not distinguishable from your prompt: the same score on 12 held-out test examples, "
                    "p = 1 (exact McNemar test, two-sided).")


def test_a_sequential_race_is_described_as_one_with_where_it_stopped(tmp_path):
    from support import noisy_scripted, write_reviews

    data, url = write_reviews(tmp_path, 200), f"sqlite:///{tmp_path / 'runs.sqlite'}"
    s = api.optimize(data, method="opro", budget=200, train_size=10, test_size=20, task_model="scripted",
                     optimizer_model="scripted", store_url=url, select_sequential=True, quiet=True,
                     backends=noisy_scripted()).summary
    page = render_run(run_page_data(RunStore(url), s["run_id"]))
    race = s["selection"]["race"]
    assert "raced your prompt sequentially" in page and f"The race {race['sentence']}." in page
    assert "in rounds of 10; a finalist a paired test found worse" not in page  # not the fixed race's words
    dropped = [c for c in s["selection"]["candidates"] if c.get("dropped_why")]
    assert all(f"dev examples: {c['dropped_why']}" in page for c in dropped)


def test_a_calibrated_runs_page_says_so_with_the_priors_and_their_cost(tmp_path):
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"input": f"Review {i}: the stay was {LABELS[i % 4]}.",
                                        "target": LABELS[i % 4]}) + "\n" for i in range(120)))
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    result = api.optimize(dataset=str(data), method="ape", budget=150, train_size=10, dev_size=10, test_size=20,
                          task_model="scripted", optimizer_model="scripted", store_url=url, quiet=True, calibrate=True)
    store = RunStore(url)
    page_data = run_page_data(store, result.run_id)
    [row] = [r for r in page_data["cost"]["rows"] if r["phase"] == "search: content-free inputs (calibration)"]
    assert row["calls"] == sum(1 for c in store.call_rows(result.run_id)
                               if c["role"] == "calibration" and c["charged"] and not c["cached"]) > 0
    assert page_data["cost"]["total"]["calls"] == result.summary["llm_calls"]
    page = render_run(page_data)
    assert "scores are calibrated" in page and "prior of your prompt: positive" in page
    (tmp_path / "plain").mkdir()
    plain = make_run(tmp_path / "plain", method="ape", hostile=False)
    assert "scores are calibrated" not in render_run(run_page_data(*plain))
    assert all("calibration" not in r["phase"] for r in run_page_data(*plain)["cost"]["rows"])


def test_the_page_shows_the_answer_mode_and_how_the_twins_did_on_dev(tmp_path):
    from support import write_reviews

    data, url = write_reviews(tmp_path, 200), f"sqlite:///{tmp_path / 'runs.sqlite'}"
    s = api.optimize(data, method="opro", budget=200, train_size=10, test_size=20, task_model="scripted",
                     optimizer_model="scripted", store_url=url, reasoning="search", quiet=True).summary
    page_data = run_page_data(RunStore(url), s["run_id"])
    page = render_run(page_data)
    assert f"raced as finalists too: {s['selection']['reasoning']['sentence']}." in page
    assert any(r["layout"].endswith(" +reasoning") for r in page_data["table"])
    (tmp_path / "direct").mkdir()
    plain = render_run(run_page_data(*make_run(tmp_path / "direct", hostile=False)))
    assert "answer-mode" not in plain and "+reasoning" not in plain  # a direct run's page as before


def test_prompt_parts_show_the_answer_mode_only_where_a_prompt_reasons():
    from promptgym.report.html import prompt_parts

    direct, reasoning = {"instruction": "Classify."}, {"instruction": "Classify.", "reasoning": True}
    assert [p["name"] for p in prompt_parts(direct, direct)][-1] == "demonstrations"
    [mode] = [p for p in prompt_parts(direct, reasoning) if p["name"] == "answer mode"]
    assert mode["changed"] and mode["start"] == "direct" and mode["chosen"].startswith("reasoning")
