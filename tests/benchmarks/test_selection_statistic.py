"""benchmarks/selection_statistic.py on a tiny store made here (scripted model: the replay's
bookkeeping, not a measurement): it decides each recorded race again with every statistic, agrees
with the recorded decision on accuracy, and says which races lack probabilities."""

from __future__ import annotations

import json

from promptgym import api
from promptgym.store.runs import RunStore, scores

from support import load_script, noisy_scripted, write_reviews

def _module():
    return load_script("benchmarks/selection_statistic.py")


def test_replays_recorded_races_per_statistic_and_says_when_probabilities_are_missing(tmp_path, capsys):
    data, url = write_reviews(tmp_path, 200), f"sqlite:///{tmp_path / 'runs.sqlite'}"
    common = dict(budget=200, train_size=10, test_size=20, task_model="scripted", optimizer_model="scripted",
                  store_url=url, backends=noisy_scripted(), select_k=3)  # three finalists: every run races
    runs = [api.optimize(data, method=m, seed=s, **common).summary for m, s in (("opro", 0), ("ape", 1), ("grips", 2))]
    old = runs[-1]["run_id"]
    store = RunStore(url)
    with store.engine.begin() as conn:  # as a store from before revision 0005 has it
        conn.execute(scores.update().where(scores.c.run_id == old).values(probability=None, margin=None))
    api.optimize(data, method="ape", seed=3, **{**common, "select_k": 0})  # no race: nothing to replay

    bench = _module()
    result = bench.measure([url])
    assert (result["races"], result["with_soft_evidence"], result["without_race"]) == (3, 2, 1)
    [accuracy] = result["all_runs"]
    assert accuracy["same_as_recorded"] == 3  # the replay is the race's own last step
    assert accuracy["replaced"] == sum(not r["kept_start"] for r in runs)
    assert [r["statistic"] for r in result["comparable"]] == ["accuracy", "probability", "margin"]
    assert all(r["runs"] == 2 and r["test_known"] + r["test_unknown"] == 2 for r in result["comparable"])

    out = tmp_path / "result.json"
    assert bench.main(["--store", url, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 of 3 races have no per-example probabilities (stored before store revision 0005" in printed
    assert "races with soft evidence, each statistic:" in printed
    assert json.loads(out.read_text())["comparable"] == result["comparable"]

    with store.engine.begin() as conn:
        conn.execute(scores.update().values(probability=None, margin=None))
    assert "No race has per-example probabilities" in "\n".join(bench.lines(bench.measure([url])))
