"""DP2O end to end on the scripted world (see conftest): pool, policy, budget, resume, errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from promptgym.data.dataset import Dataset
from promptgym.errors import PromptgymError
from promptgym.optimizers.base import Recorder
from promptgym.optimizers.dp2o import Dp2oOptimizer, plan_budget
from promptgym.tasks.task import ChoiceTask, GenerationTask

from dp2o_world import LABELS, WorldBackend, world_examples, world_reply  # noqa: E402

FAST = {"episodes": 60, "hidden": 64, "rounds": 2, "seeds": 5, "seed_candidates": 6}


def test_end_to_end_policy_beats_single_prompts(world):
    ctx = world()
    opt = Dp2oOptimizer(**FAST)
    best = opt.run(ctx)
    stats = ctx.stats["dp2o"]
    assert len(best.demos) == 1 and best.instruction == "Classify the note."
    assert stats["pool_before_screening"] >= stats["pool_after_screening"] == stats["h"] == 15
    dialogue = stats["dialogue"]
    assert dialogue["turns"] - dialogue["retries"] == 2 * (5 - 2) * 4  # rounds x windows x labels
    assert stats["seeds"]["kept"] == 5
    report = opt.heldout_report(ctx, ctx.evaluator, ctx.test_examples)["dp2o"]
    test = report["test_accuracy"]
    assert set(test) == {"initial", "best_single", "similarity", "policy_greedy", "policy_ensemble"}
    assert test["policy_greedy"] >= 0.9 and test["policy_greedy"] > test["best_single"] + 0.2
    assert report["completed"] and report["calls"]["inference"]["charged"] == 0
    assert stats["sue_dev_spearman"]["pool"]["n"] == 15
    assert stats["encoder"]["kind"] == "tfidf"


@pytest.mark.parametrize("encoder", ["tfidf", "model"])
def test_no_test_input_reaches_the_model_during_the_search(world, encoder):
    """Every text the models see while searching (asked, scored or embedded) is free of test
    inputs; the held-out report afterwards does send them, which shows the log would catch one."""
    backend = WorldBackend(embeddings=True)
    ctx = world(backend=backend)
    opt = Dp2oOptimizer(**FAST, encoder=encoder)
    opt.run(ctx)
    test_inputs = [e.input for e in ctx.test_examples]
    searched = list(backend.texts)
    assert len(searched) > 100
    assert not [t for t in searched for x in test_inputs if x in t]
    assert ctx.stats["dp2o"]["encoder"]["kind"] == encoder
    opt.heldout_report(ctx, ctx.evaluator, ctx.test_examples)
    reported = backend.texts[len(searched):]
    assert all(any(x in t for t in reported) for x in test_inputs)
    if encoder == "model":
        assert set(test_inputs) <= set(reported)  # embedded as bare texts


def test_model_encoder_embeds_through_the_evaluator_without_spending_budget(world):
    backend = WorldBackend(embeddings=True)
    ctx = world(backend=backend, budget=700)
    rows: list[dict] = []
    ctx.evaluator.ledger = rows.extend
    opt = Dp2oOptimizer(**FAST)  # encoder auto: the task model embeds, so its vectors are the states
    opt.run(ctx)
    stats = ctx.stats["dp2o"]
    assert stats["encoder"]["kind"] == "model" and stats["encoder"]["dim"] == 32
    embedded = [r for r in rows if r["kind"] == "embed"]
    assert stats["encoder"]["embedding_calls"] == len(embedded) > len(ctx.train) + len(ctx.dev)
    assert not any(r["charged"] for r in embedded)
    made = [r for r in rows if not r["cached"]]
    assert ctx.evaluator.budget.spent == sum(r["charged"] for r in made) == len(made) - len(embedded)
    report = opt.heldout_report(ctx, ctx.evaluator, ctx.test_examples)["dp2o"]
    assert report["completed"] and report["encoder"] == "model"
    assert set(report["test_accuracy"]) == {"initial", "best_single", "similarity", "policy_greedy",
                                            "policy_ensemble"}


@pytest.mark.parametrize("budget", [5, 60, 200, 700])
def test_budget_is_never_exceeded(world, budget):
    backend = WorldBackend()
    ctx = world(budget=budget, backend=backend)
    opt = Dp2oOptimizer(**FAST)
    best = opt.run(ctx)
    assert len(backend.keys) <= budget
    assert ctx.evaluator.budget.spent == len(backend.keys)
    assert best is not None
    if budget >= 200:  # enough for a (scaled-down) complete run
        assert not ctx.stats.get("budget_exhausted")
        assert ctx.stats["dp2o"]["h"] >= 2


def test_plan_budget_scales_down_only():
    p = dict(Dp2oOptimizer.defaults)
    free = plan_budget(float("inf"), 32, 32, 4, p)
    assert (free["rounds"], free["seeds"], free["pool_size"], free["sue_examples"]) == (3, 8, 15, 32)
    small = plan_budget(300, 21, 9, 4, p)
    assert small["expected_calls"] <= 300
    assert small["rounds"] == 1 and small["sue_examples"] < 21


def test_a_dev_split_sized_for_final_selection_leaves_the_pool_room_at_the_default_budget():
    """Half of 300 calls for the search and 75 dev examples (today's final-selection defaults): validating
    every pool prompt and the start on all 75 cost more than the search has, and the pool came out
    empty (measured on Gemma 3 270M, every seed). The plan validates on 20 of them instead."""
    p = dict(Dp2oOptimizer.defaults)
    plan = plan_budget(150, 20, 75, 4, p)
    assert plan["dev_examples"] == 20 and plan["pool_size"] >= 2 and plan["expected_calls"] <= 150
    assert plan_budget(float("inf"), 20, 75, 4, p)["dev_examples"] == 75  # never cut without need
    assert plan_budget(150, 20, 9, 4, p)["dev_examples"] == 9


def test_with_75_dev_examples_and_150_calls_the_run_builds_a_pool_and_validates_on_20(world):
    ctx = world(train=20, dev=75, budget=150)
    Dp2oOptimizer().run(ctx)
    stats = ctx.stats["dp2o"]
    assert "error" not in stats and stats["h"] >= 2 and stats["dev_size"] == 20
    assert ctx.evaluator.budget.spent <= 150


def test_resume_reuses_the_policy_and_repeats_no_call(world):
    recorder = Recorder()
    first_backend = WorldBackend()
    first = Dp2oOptimizer(**FAST)
    ctx = world(backend=first_backend, recorder=recorder)
    best = first.run(ctx)
    assert ctx.stats["dp2o"]["policy"]["reused"] is False
    stored = recorder.get_artifact("dp2o")
    assert json.loads(json.dumps(stored))["policy"] == stored["policy"]  # JSON-able
    again_backend = WorldBackend()
    again_ctx = world(backend=again_backend, recorder=recorder)
    again = Dp2oOptimizer(**FAST)
    assert again.run(again_ctx) == best
    assert again_backend.keys == []  # every call replayed from the cache
    assert again_ctx.stats["dp2o"]["policy"]["reused"] is True
    a = first.heldout_report(ctx, ctx.evaluator, ctx.test_examples)["dp2o"]["test_accuracy"]
    b = again.heldout_report(again_ctx, again_ctx.evaluator, again_ctx.test_examples)["dp2o"]["test_accuracy"]
    assert a == b


def test_interrupted_run_resumes_to_the_same_result(world):
    whole = WorldBackend()
    expected = Dp2oOptimizer(**FAST).run(world(backend=whole, cache="whole.sqlite"))
    keys: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        Dp2oOptimizer(**FAST).run(world(backend=WorldBackend(keys, interrupt_after=len(whole.keys) // 2),
                                        cache="resumed.sqlite"))
    result = Dp2oOptimizer(**FAST).run(world(backend=WorldBackend(keys), cache="resumed.sqlite"))
    assert result == expected
    assert keys == whole.keys  # same requests, none twice


def test_predict_uses_the_stored_policy(world):
    recorder = Recorder()
    ctx = world(recorder=recorder)
    opt = Dp2oOptimizer(**FAST)
    best = opt.run(ctx)
    rows = opt.predict(ctx, best, world_examples(8, "new"))
    assert len(rows) == 8
    assert sum(r["prediction"] == e.target for r, e in zip(rows, world_examples(8, "new"))) >= 7
    assert {"greedy_prediction", "ensemble_prediction", "prompt_id", "policy_top"} <= set(rows[0])


def test_only_choice_tasks_with_probabilities(world):
    ctx = world()
    ctx.task = GenerationTask()
    with pytest.raises(PromptgymError, match="classification"):
        Dp2oOptimizer().run(ctx)
    ctx.task = ChoiceTask(scoring="generate")
    with pytest.raises(PromptgymError, match="probabilities"):
        Dp2oOptimizer().run(ctx)
    with pytest.raises(PromptgymError, match="encoder"):
        Dp2oOptimizer(encoder="bert")


def test_dev_is_carved_from_train_when_missing(world):
    ctx = world(train=20, dev=0)
    Dp2oOptimizer(**FAST).run(ctx)
    stats = ctx.stats["dp2o"]
    assert stats["dev_carved_from_train"] and (stats["train_size"], stats["dev_size"]) == (14, 6)


def test_api_optimize_then_predict(tmp_path):
    from promptgym import api, cli
    from promptgym.runner.backends import using

    backend = WorldBackend()
    backends = {"scripted": backend}
    data = Dataset("world", world_examples(40, "d"), description="Classify the note.")
    result = api.optimize(data, method="dp2o", budget=None, train_size=16, dev_size=8, test_size=12,
                          task_model="scripted", optimizer_model="scripted", params=FAST, backends=backends)
    report = result.summary["dp2o"]
    assert set(report["test_accuracy"]) == {"initial", "best_single", "similarity", "policy_greedy",
                                            "policy_ensemble"}
    assert report["pool_after_screening"] == report["h"]
    # DP2O's own pick is its best single prompt; final selection may keep the start on top of it
    assert result.summary["test_method_best"] == pytest.approx(report["test_accuracy"]["best_single"], abs=1e-4)
    assert result.summary["dev_size"] == 8 and result.summary["selection"]["enabled"]
    rows = api.predict(result.run_id, ["Note x: the room was neutral overall."], backends=backends)
    assert rows[0]["prediction"] == rows[0]["ensemble_prediction"] and rows[0]["prediction"] in LABELS
    with using(backends):
        out = CliRunner().invoke(cli.main, ["predict", result.run_id, "--input", "the food was positive", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)[0]["input"] == "the food was positive"
    # a resumed, finished run is answered from the store
    assert api.resume(result.run_id).summary["dp2o"] == json.loads(json.dumps(report))


def test_a_dialogue_with_nothing_usable_keeps_the_start(world):
    # What a 135M model may do in a short dialogue: only replies no item can be read from.
    mute = WorldBackend()
    mute.reply = lambda request: "!!!"
    ctx = world(backend=mute)
    opt = Dp2oOptimizer(**FAST)
    best = opt.run(ctx)
    stats = ctx.stats["dp2o"]
    assert best == ctx.initial and stats["h"] == 0 and stats["error"] == "empty pool"
    assert stats["pool_before_screening"] == 0 and sum(stats["dialogue"]["dropped"].values()) == stats["dialogue"]["turns"]
    assert ctx.stats["stopped_by"] == "done"
    # the planned rounds (2) left nothing: as many again were held (unlimited budget), then it stopped
    assert stats["dialogue"]["rounds"] == 2 * FAST["rounds"]


def test_an_empty_dialogue_holds_more_rounds_within_the_budget(world):
    # Mute for the whole first round (3 windows x 4 labels x 3 attempts), then the usual world.
    replies = {"n": 0}

    def late(request):
        replies["n"] += 1
        return "!!!" if replies["n"] <= 36 else world_reply(request)

    backend = WorldBackend()
    backend.reply = late
    ctx = world(budget=400, backend=backend)
    best = Dp2oOptimizer(**dict(FAST, rounds=1)).run(ctx)
    stats = ctx.stats["dp2o"]
    assert stats["dialogue"]["rounds"] == 2 and stats["h"] >= 2 and "error" not in stats
    assert len(backend.keys) <= 400 and best is not None
    # a budget that pays for no second round and a screening keeps the start after one
    backend = WorldBackend()
    backend.reply = lambda request: "!!!"
    ctx = world(budget=50, backend=backend, cache="mute.sqlite")
    Dp2oOptimizer(**dict(FAST, rounds=1)).run(ctx)
    assert ctx.stats["dp2o"]["dialogue"]["rounds"] == 1 and ctx.stats["dp2o"]["error"] == "empty pool"
    assert len(backend.keys) <= 50
