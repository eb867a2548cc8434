"""benchmarks/peers/table.py: the peers table over tasks and seeds, from recorded-looking rows (no
model): pooling over seeds, regressions, calls, failures, and our best against the best peer on the
same test examples, by test accuracy and by what the search added over its own start."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "benchmarks" / "peers"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, PEERS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


common = sys.modules.get("common") or _load("common")
table = _load("table")

N = 40  # test examples per seed


def bits(ones: int, n: int = N, offset: int = 0) -> list[int]:
    """``ones`` right answers out of ``n``, starting at ``offset`` (wrapping)."""
    return [int((i - offset) % n < ones) for i in range(n)]


def row(system: str, dataset: str, seed: int, start: list[int] | None, final: list[int] | None,
        status: str = "ok", **kw) -> dict:
    framework = "promptgym" if system.startswith("promptgym-") else "gepa 0.1.4"
    r = dict(peer=system, dataset=dataset, seed=seed, framework=framework, status=status, calls_search=190,
             refused_search=0, over_budget_search=0, wall_seconds=100.0 + seed, error=None,
             final_prompt=f"{system} prompt {seed}")
    if start is not None:
        r.update(test_start=start, test_final=final)
    r.update(kw)
    return r


@pytest.fixture()
def rows() -> list[dict]:
    out = []
    for seed in (0, 1, 2):
        # task A: ours gains 10 of 40 on each seed; the peer gains 2 on seeds 0 and 1, loses 2 on seed 2
        out.append(row("promptgym-gpo", "A", seed, bits(10), bits(20)))
        out.append(row("gepa", "A", seed, bits(12), bits(14) if seed < 2 else bits(10), calls_search=200,
                       refused_search=3 if seed == 0 else 0))
        # task B: equal finals, ours and the peer answer differently on 4 examples of each seed
        out.append(row("promptgym-gpo", "B", seed, bits(20), bits(20)))
        out.append(row("gepa", "B", seed, bits(20), bits(20, offset=4)))
    out.append(row("dspy-copro", "A", 0, None, None, status="crashed", calls_search=2,
                   error="AdapterParseError: Adapter JSONAdapter failed to parse the LM response."))
    return out


def test_pooled_over_seeds_with_regressions_calls_and_failures(rows):
    records = {(r["dataset"], r["system"]): r for r in table.pool(rows)}
    ours, peer, crashed = records[("A", "promptgym-gpo")], records[("A", "gepa")], records[("A", "dspy-copro")]
    assert (ours["n"], ours["start"], ours["final"]) == (3 * N, 10 / N, 20 / N)
    assert ours["delta"] == pytest.approx(0.25) and ours["interval"][0] > 0 and ours["p_value"] < 1e-6
    assert ours["worse"] == 0 and ours["ours"] and not peer["ours"]
    assert peer["delta"] == pytest.approx((2 + 2 - 2) / (3 * N)) and peer["worse"] == 1  # seed 2 ended below its start
    assert peer["interval"][0] < peer["delta"] < peer["interval"][1]
    assert (peer["calls_mean"], peer["calls_max"], peer["refused"]) == (200, 200, 3)
    assert peer["wall_seconds_mean"] == pytest.approx(101.0)
    assert (crashed["ok"], crashed["runs"]) == (0, 1) and crashed.get("final") is None
    assert crashed["failed"] == [{"seed": 0, "status": "crashed",
                                  "error": "AdapterParseError: Adapter JSONAdapter failed to parse the LM response."}]
    # McNemar on the pooled pairs: seed 2's two losses against four gains
    assert peer["p_value"] == pytest.approx(common.paired([0, 0, 0, 0, 1, 1], [1, 1, 1, 1, 0, 0])["p_value"])


def test_paired_sign_test_counts_pairs_that_differ_for_any_values():
    # Gains in {-1, 0, 1}: two better, one worse, one tie -> the binomial test on 2 of 3.
    p = common.paired([0, 0, 0, 0], [1, 1, -1, 0])
    assert (p["better"], p["worse"]) == (2, 1) and p["p_value"] == pytest.approx(1.0)
    q = common.paired([0] * 12, [1] * 12)  # 12 of 12 better: p = 2 / 2**12
    assert q["p_value"] == pytest.approx(2 / 2 ** 12) and q["interval"] == [1.0, 1.0]


def test_our_best_against_the_best_peer_on_the_same_examples(rows):
    duels = {d["dataset"]: d for d in table.versus(rows, table.pool(rows))}
    a, b = duels["A"], duels["B"]
    assert (a["ours"], a["peer"], a["n"]) == ("promptgym-gpo", "gepa", 3 * N)  # the crashed peer has no final
    assert a["ours_final"] == pytest.approx(0.5) and a["peer_final"] == pytest.approx((14 + 14 + 10) / (3 * N))
    assert a["delta"] == pytest.approx(a["ours_final"] - a["peer_final"])
    assert a["interval"][0] > 0 and a["ahead"] == "promptgym-gpo"
    assert b["delta"] == 0 and b["interval"][0] < 0 < b["interval"][1] and b["ahead"] is None
    assert "no real difference" in table.verdict(b) and "promptgym-gpo is ahead" in table.verdict(a)


def test_our_search_against_the_peers_search_per_example_gains(rows):
    duels = {d["dataset"]: d for d in table.versus(rows, table.pool(rows), by="delta")}
    a, b = duels["A"], duels["B"]
    assert (a["by"], a["ours"], a["peer"], a["n"]) == ("delta", "promptgym-gpo", "gepa", 3 * N)
    assert a["ours_delta"] == pytest.approx(10 / N) and a["peer_delta"] == pytest.approx(2 / (3 * N))
    # per example, our gain minus the peer's: 8 on seeds 0 and 1; on seed 2 the peer's two losses count 2 each
    assert a["delta"] == pytest.approx((8 + 8 + 12) / (3 * N)) == pytest.approx(a["ours_delta"] - a["peer_delta"])
    assert a["interval"][0] > 0 and a["ahead"] == "promptgym-gpo" and a["p_value"] < 1e-6
    # B: neither gains; the peer's 4 losses and 4 gains per seed cancel: a sign test of 12 against 12
    assert b["delta"] == 0 and b["ahead"] is None and b["p_value"] == pytest.approx(1.0)


def test_a_better_final_from_a_better_start_is_not_a_better_search(rows):
    """Ours asks better (starts at 30 of 40) and gains nothing; the peer starts at 5 and gains 10:
    ahead in test accuracy, behind in what the search added."""
    rows = rows + [r for seed in (0, 1, 2) for r in (row("promptgym-gpo", "C", seed, bits(30), bits(30)),
                                                      row("gepa", "C", seed, bits(5), bits(15)))]
    records = table.pool(rows)
    by_final = {d["dataset"]: d for d in table.versus(rows, records)}["C"]
    by_gain = {d["dataset"]: d for d in table.versus(rows, records, by="delta")}["C"]
    assert by_final["ahead"] == "promptgym-gpo" and by_final["delta"] == pytest.approx(15 / N)
    assert by_gain["ahead"] == "gepa" and by_gain["delta"] == pytest.approx(-10 / N)


def test_pairs_are_matched_by_seed_and_example(rows):
    rows = [r for r in rows if not (r["peer"] == "gepa" and r["dataset"] == "A" and r["seed"] == 1)]
    rows.append(row("gepa", "A", 1, None, None, status="timeout", error="no result within --timeout 10800 s"))
    (a, _) = table.versus(rows, table.pool(rows))
    assert a["n"] == 2 * N  # seed 1 of the peer timed out: only seeds 0 and 2 are paired
    assert a["peer_final"] == pytest.approx((14 + 10) / (2 * N)) and a["ours_final"] == pytest.approx(0.5)


def test_the_markdown_table(rows):
    result = table.summarize({"config": dict(datasets=["A", "B"], seeds=[0, 1, 2], budget=200, train_size=20,
                                             dev_size=30, test_size=N, task_model="gemma3-270m", task_plain=True,
                                             optimizer_model="embedded", started="2026-12-07 10:00 UTC"),
                              "rows": rows, "seconds": 7200})
    text = table.markdown(result)
    assert "# Peers on gemma3-270m: A, B" in text and "a base model: plain completion, no chat template" in text
    assert "| promptgym-gpo | 3/3 | 0.250 | 0.500 | +0.250 [" in text
    assert "| gepa | 3/3 | 0.300 |" in text and "| 1/3 | 200 (3) | 101 |" in text
    assert "| dspy-copro | 0/1 | - | - | - | - | 0/0 | 2 (0) | 100 |" in text
    assert "- **dspy-copro** on `A`, seed 0 (crashed): AdapterParseError" in text
    assert "| `A` | promptgym-gpo | gepa | 0.500 | 0.317 | +0.183 [" in text
    assert "| `B` | promptgym-gpo | gepa | 0.500 | 0.500 | +0.000 [" in text and "neither (interval includes 0)" in text
    assert "## Our search against the peers' search" in text
    assert "| `A` | promptgym-gpo | gepa | +0.250 | +0.017 | +0.233 [" in text
    assert "- **gepa**, `A`, seed 2: gepa prompt 2" in text


def test_the_docs_page_renders_a_recorded_run(rows, tmp_path):
    spec = importlib.util.spec_from_file_location("make_docs", ROOT / "benchmarks" / "make_docs.py")
    make_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_docs)
    results = tmp_path / "results"
    results.mkdir()
    assert "Not recorded yet" in "\n".join(make_docs.peers_gemma_section(results))
    config = dict(datasets=["A", "B"], seeds=[0, 1, 2], budget=200, train_size=20, dev_size=30, test_size=N,
                  task_model="gemma3-270m", task_plain=True, optimizer_model="embedded", started="2026-12-07 10:00 UTC")
    result = table.summarize({"config": config, "rows": rows, "seconds": 7200})
    (results / "peers-gemma.json").write_text(json.dumps(result))
    (results / "peers-gemma.md").write_text(table.markdown(result))
    page = "\n".join(make_docs.peers_gemma_section(results))
    assert "What it says: on `A`, promptgym-gpo is ahead (promptgym-gpo minus gepa in test accuracy: +0.183 [" in page
    assert ("And in what the search added over its own start: on `A`, promptgym-gpo is ahead (promptgym-gpo minus "
            "gepa in gain: +0.233 [") in page
    assert "on `B`, neither is ahead" in page and "### `A`" in page and "# Peers on" not in page
    assert ("yet the starts differ (test accuracy, pooled): on `A` ours 0.250-0.250, the peers' 0.300-0.300; "
            "on `B` ours 0.500-0.500, the peers' 0.500-0.500.") in page
    assert ("--datasets A,B --seeds 0,1,2 --budget 200 --train-size 20 --dev-size 30 --test-size 40 "
            "--task-model gemma3-270m --optimizer-model embedded --peers gepa,dspy-copro --promptgym-methods gpo") in page


def test_a_constant_answer_is_the_bar_the_best_returned_prompt_is_held_to(rows):
    # task A: the constant (train+dev's most common label) is right on 15 of 40 per seed; the best returned
    # prompts (ours, 20 of 40) beat it by 5 per seed, on the same examples; task B has no constant recorded
    constant = [{"dataset": "A", "seed": s, "label": "No", "test": bits(15)} for s in (0, 1, 2)]
    result = table.summarize({"config": dict(datasets=["A", "B"], seeds=[0, 1, 2], budget=200, train_size=20,
                                             dev_size=30, test_size=N, task_model="gemma3-270m",
                                             optimizer_model="embedded", started="2026-12-07 10:00 UTC"),
                              "rows": rows, "constant": constant, "seconds": 7200})
    (f,) = result["floor"]
    assert f["dataset"] == "A" and f["labels"] == ["No"] and f["n"] == 3 * N
    assert f["accuracy"] == pytest.approx(15 / N) and f["best"] == "promptgym-gpo"
    assert f["delta"] == pytest.approx(5 / N) and f["paired_n"] == 3 * N and f["interval"][0] > 0
    text = table.markdown(result)
    assert ("Constant answer (each seed's most common train+dev label: `No`): 0.375 on 120 test examples. "
            "The best returned prompts (promptgym-gpo, 0.500) minus it on the same 120 (where it scores 0.375): "
            "+0.125 [") in text
    assert text.count("Constant answer") == 1  # not under B's table
    worse = [dict(c, test=bits(30)) for c in constant]  # a constant above every returned prompt: a negative delta
    (f,) = table.summarize(dict(result, constant=worse))["floor"]
    assert f["delta"] == pytest.approx(-10 / N) and f["interval"][1] < 0
