"""benchmarks/task_kinds.py: its table from recorded-looking runs, finished runs not run again, bad names refused."""

import json

from support import load_script

kinds = load_script("benchmarks/task_kinds.py")


def _summary(**extra):
    return dict(run_id="r1", test_size=150, test_initial=0.62, test_best=0.66, test_delta=0.04,
                test_interval=[-0.01, 0.09], test_p_value=0.12, test_method_best=0.66, kept_start=False,
                llm_calls=300, seconds=42.0, **extra)


def test_table_has_each_run_its_interval_the_pairs_and_the_per_run_notes():
    rows = {"cal-on": _summary(calibration={"prior_initial": {"a": 0.7, "b": 0.3}}),
            "code": {"error": "promptgym: error: bubblewrap missing"}}
    pairs = [dict(a="cal-off", b="cal-on", paired=dict(n=150, delta=-0.02, low=-0.087, high=0.047, p_value=0.69))]
    md = kinds.markdown(rows, pairs, dict(date="2026-12-06", minutes=3.0, cores=2))
    assert "| cal-on | 5: contextual calibration (sst-2) | 150 | 0.620 | 0.660 | +0.040 [-0.010, +0.090] | 0.12 |" in md
    assert "| code | 6: the code task (python-functions, code-tests) | failed: promptgym: error: bubblewrap missing" in md
    assert "- cal-off -> cal-on: -0.020 [-0.087, +0.047] on 150 examples, p = 0.69" in md
    assert 'cal-on: calibrated; prior of the start {"a": 0.7, "b": 0.3}' in md


def test_a_finished_run_is_read_back_not_run_again(tmp_path):
    (tmp_path / "code.json").write_text(json.dumps(_summary()) + "\n")
    assert kinds.run("code", tmp_path, ["false"])["test_best"] == 0.66  # "false" would fail if it were called


def test_unknown_run_names_are_refused_with_one_line(tmp_path, capsys):
    assert kinds.main(["--runs", "code,nope", "--work", str(tmp_path)]) == 2
    assert "unknown run(s) nope" in capsys.readouterr().err
