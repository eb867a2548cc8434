"""RLPrompt: the reward against hand-computed values, the soft Q-learning update in pure numpy, and
runs on the scripted model (learning a rewarded word, budget, lineage, determinism)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from promptgym.data.dataset import Example
from promptgym.evaluation.evaluator import EvalResult
from promptgym.models.base import Completion, OptionScores
from promptgym.models.scripted import ScriptedBackend
from promptgym.optimizers import get_method
from promptgym.optimizers.rlprompt import GENERAL_WORDS, RlPromptOptimizer, build_vocabulary
from promptgym.optimizers.rlprompt.policy import backward, forward, greedy, init_policy, sample
from promptgym.optimizers.rlprompt.reward import piecewise_gap, prompt_reward, stabilise
from promptgym.optimizers.rlprompt.trainer import Adam, sql_loss, train_step
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import ChoiceTask, GenerationTask
from support import LABELS, Recording


def test_registered_with_the_papers_reward_and_length():
    assert get_method("rlprompt") is RlPromptOptimizer
    d = RlPromptOptimizer.defaults
    assert (d["prompt_length"], d["reward_incorrect"], d["reward_correct"]) == (5, 180.0, 200.0)
    assert d["target_rate"] == 0.001
    assert d["mode"] == "append" and RlPromptOptimizer.parameters["mode"].paper == "replace"


# ---- reward ----------------------------------------------------------------------------------

def test_piecewise_gap_hand_computed():
    probs = np.array([0.5, 0.3, 0.2])
    assert piecewise_gap(probs, 0) == pytest.approx(0.2 * 200)  # right: 0.5 - 0.3, times lambda2
    assert piecewise_gap(probs, 2) == pytest.approx(-0.3 * 180)  # wrong: 0.2 - 0.5, times lambda1
    assert piecewise_gap(probs, 1) == pytest.approx(-0.2 * 180)
    assert piecewise_gap(np.array([0.5, 0.5]), 0) == 0.0


def _example(i: int, target: str) -> Example:
    return Example(f"e{i}", f"input {i}", (target,), LABELS)


def test_prompt_reward_averages_the_gap_over_examples_from_class_probabilities():
    task = ChoiceTask()
    examples = [_example(0, "positive"), _example(1, "negative")]
    responses = [OptionScores(tuple(math.log(p) for p in (0.7, 0.2, 0.05, 0.05)), (1, 1, 1, 1)),
                 OptionScores(tuple(math.log(p) for p in (0.6, 0.3, 0.05, 0.05)), (1, 1, 1, 1))]
    result = EvalResult(Prompt("x"), examples, [1.0, 0.0], ["positive", "positive"], responses)
    # example 0: label p=0.7, best other 0.2 -> +0.5 x 200 = 100; example 1: 0.3 - 0.6 = -0.3 x 180 = -54
    assert prompt_reward(task, result) == pytest.approx((100 - 54) / 2)
    assert prompt_reward(task, result, incorrect=1.0, correct=1.0) == pytest.approx((0.5 - 0.3) / 2)


def test_prompt_reward_reads_the_calibrated_probabilities_of_a_calibrated_result():
    task = ChoiceTask(calibrate=True)
    response = OptionScores(tuple(math.log(p) for p in (0.6, 0.4, 0.0001, 0.0001)), (1, 1, 1, 1))
    example = _example(1, "negative")
    prior = {"positive": 0.7, "negative": 0.3, "neutral": 0.5, "ambivalent": 0.5}
    result = EvalResult(Prompt("x"), [example], [1.0], ["negative"], [response], prior=prior)
    # calibrated: positive 6/7, negative 4/3 (the others near 0), renormalised: the right option leads
    weights = np.array([0.6 / 0.7, 0.4 / 0.3, 0.0001 / 0.5, 0.0001 / 0.5])
    probs = weights / weights.sum()
    assert prompt_reward(task, result) == pytest.approx((probs[1] - probs[0]) * 200)
    uncalibrated = EvalResult(Prompt("x"), [example], [0.0], ["positive"], [response])
    assert prompt_reward(task, uncalibrated) < 0


def test_prompt_reward_without_probabilities_uses_the_metric_as_a_one_hot_gap():
    examples = [_example(0, "a"), _example(1, "b"), _example(2, "c")]
    result = EvalResult(Prompt("x"), examples, [1.0, 0.0, 0.5], ["a", "x", "c"],
                        [Completion("a"), Completion("x"), Completion("c")])
    # gaps 1, -1 and 0: 200, -180, 0
    assert prompt_reward(GenerationTask(), result) == pytest.approx((200 - 180 + 0) / 3)


def test_z_score_across_prompts_then_shaping_times_five():
    shaped = stabilise([1.0, 2.0, 3.0, 4.0])
    # mean 2.5, population std sqrt(1.25) = 1.1180; (r - 2.5) / (1.1180 + 1e-4) x 5
    assert shaped == pytest.approx([-6.7076, -2.2359, 2.2359, 6.7076], abs=1e-4)
    assert stabilise([7.0, 7.0, 7.0]) == pytest.approx([0.0, 0.0, 0.0])


# ---- soft Q-learning, pure numpy (no model) ---------------------------------------------------

def test_sql_loss_hand_computed_for_one_word_from_two():
    # Q = 0 for both words, target V' = log 2, A = -log 2; reward 3: the single-step and the
    # multi-step residuals are both A - (r - V') = -3, so the loss is (9 + 9) / 2 = 9
    loss, dlogits = sql_loss(np.zeros((1, 1, 2)), np.zeros((1, 1, 2)), np.array([[0]]), np.array([3.0]))
    assert loss == pytest.approx(9.0)
    # d loss / d A = -3 + -3 = -6; d A / d Q = (1 - 0.5, -0.5)
    assert dlogits[0, 0] == pytest.approx([-3.0, 3.0])


def _loss_of(w, target, length, actions, rewards):
    return sql_loss(forward(w, length, actions)[0], forward(target, length, actions)[0], actions, rewards)[0]


def test_policy_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    length, vocab = 3, 6
    w = init_policy(rng, length, vocab, hidden=5)
    w["w2"] = rng.normal(size=w["w2"].shape)  # away from the near-zero init, so every term counts
    target = {k: v + 0.1 * rng.normal(size=v.shape) for k, v in w.items()}
    actions = sample(w, length, 4, rng)
    rewards = np.array([1.0, -2.0, 0.5, 3.0])
    logits, cache = forward(w, length, actions)
    _, dlogits = sql_loss(logits, forward(target, length, actions)[0], actions, rewards)
    grads = backward(w, cache, dlogits)
    eps = 1e-6
    for key in w:
        for idx in list(np.ndindex(w[key].shape))[:12]:
            plus = {k: v.copy() for k, v in w.items()}
            plus[key][idx] += eps
            minus = {k: v.copy() for k, v in w.items()}
            minus[key][idx] -= eps
            numeric = (_loss_of(plus, target, length, actions, rewards)
                       - _loss_of(minus, target, length, actions, rewards)) / (2 * eps)
            assert grads[key][idx] == pytest.approx(numeric, abs=1e-5)


def _sequence_logprob(w, length, actions):
    logits, _ = forward(w, length, actions)
    logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return np.take_along_axis(logp, actions[..., None], axis=-1)[..., 0].sum(axis=1)


def test_update_raises_the_probability_of_the_rewarded_sequence():
    rng = np.random.default_rng(1)
    length, vocab = 5, 50
    w = init_policy(rng, length, vocab, hidden=16)
    target = {k: v.copy() for k, v in w.items()}
    adam = Adam(0.05)
    actions = np.array([[3, 7, 7, 1, 9], [4, 0, 2, 8, 5], [10, 11, 12, 13, 14], [20, 21, 22, 23, 24]])
    rewards = stabilise([150.0, -40.0, -60.0, 10.0])  # the first sequence made the task model right
    before = _sequence_logprob(w, length, actions)
    assert before == pytest.approx([5 * -math.log(vocab)] * 4, abs=1e-3)  # near-uniform start
    for _ in range(5):
        train_step(w, target, adam, length, actions, rewards, target_rate=0.001)
    after = _sequence_logprob(w, length, actions)
    assert after[0] > before[0] + 1.0
    assert after[1] < before[1] and after[2] < before[2]
    assert np.argmax(after) == 0
    assert set(greedy(w, length)) <= {3, 7, 1, 9}  # words of the rewarded sequence


def test_value_offsets_make_the_initial_targets_consistent():
    """At the near-uniform start, the SQL gradient of a zero reward is ~0: no word is raised just
    because it was sampled."""
    rng = np.random.default_rng(2)
    length, vocab = 5, 40
    w = init_policy(rng, length, vocab, hidden=8)
    actions = sample(w, length, 3, rng)
    logits, _ = forward(w, length, actions)
    _, dlogits = sql_loss(logits, logits, actions, np.zeros(3))
    assert np.abs(dlogits).max() < 1e-2


# ---- vocabulary -------------------------------------------------------------------------------

def test_vocabulary_is_instruction_labels_general_then_frequent_input_words():
    train = [Example("a", "Zebra zebra quartz, the story.", ("positive",), LABELS),
             Example("b", "Quartz zebra again", ("negative",), LABELS)]
    vocab = build_vocabulary(Prompt("Classify the review."), train, size=200)
    assert vocab[:3] == ["classify", "the", "review"]
    assert vocab[3:7] == list(LABELS)
    general = [w for w in GENERAL_WORDS if w not in vocab[:7]]
    assert vocab[7: 7 + len(general)] == general
    assert vocab[7 + len(general):] == ["zebra", "quartz", "story", "again"]  # by count, then first seen
    assert build_vocabulary(Prompt("Classify the review."), train, size=5) == vocab[:5]


# ---- runs on the scripted model ----------------------------------------------------------------

MAGIC = "carefully"  # a general instruction word: in every vocabulary


def magic_logprob(prompt: str, option: str) -> float:
    """Scripted task: the right label (read from the synthetic input) wins only when the
    instruction holds MAGIC; otherwise the options get fixed pseudo-random scores."""
    instruction, _, rest = prompt.partition("Input:")
    label = rest.split("was ")[1].split(" ")[0] if "was " in rest else ""
    noise = int(hashlib.sha256(f"{prompt}|{option}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    right = MAGIC in instruction.lower().split() and option.strip() == label
    return -2.0 + (3.0 if right else 0.0) + noise


def _run(scripted_context, budget=None, seed=0, backend=None, cache_name="cache.sqlite", train=12, **params):
    backend = backend or ScriptedBackend(option_logprob=magic_logprob)
    ctx = scripted_context(budget=budget, seed=seed, backend=backend, cache_name=cache_name, train=train)
    ctx.recorder = Recording()
    best = RlPromptOptimizer(**params).run(ctx)
    return ctx, backend, best


@pytest.mark.parametrize("seed", [0, 1])
def test_scripted_model_policy_learns_the_rewarded_word(scripted_context, seed):
    ctx, _, best = _run(scripted_context, seed=seed, steps=30)
    assert MAGIC in best.instruction.split()
    assert ctx.best("train")[1] == 1.0
    rewards = ctx.stats["rlprompt"]["mean_raw_reward"]
    assert len(rewards) == 30 and np.mean(rewards[-5:]) > np.mean(rewards[:5]) + 50
    # the last greedy prompt (the policy's own choice at the end) holds it too
    greedy = [text for _, text, _, op in ctx.recorder.candidates if op == "rlprompt:greedy"]
    assert MAGIC in greedy[-1].split()


def test_scripted_model_replace_mode_writes_the_whole_instruction(scripted_context):
    ctx, _, best = _run(scripted_context, budget=200, prompt_length=3, mode="replace")
    vocab = ctx.state.vocab
    for _, text, _, _ in ctx.recorder.candidates:
        assert len(text.split()) == 3 and all(w in vocab for w in text.split())


@pytest.mark.parametrize("budget", [1, 10, 30, 57, 100, 250])
def test_scripted_model_budget_is_never_exceeded(scripted_context, budget):
    ctx, backend, best = _run(scripted_context, budget=budget)
    assert backend.calls <= budget
    assert ctx.evaluator.budget.spent == backend.calls
    if not ctx.stats.get("budget_exhausted"):
        assert ctx.stats["stopped_by"] in ("done", "budget")
    assert best.instruction


def test_scripted_model_plan_fits_the_budget_and_ends_with_a_greedy_score(scripted_context):
    # 12 train examples: a step costs 4 x 8, a greedy score 12. After two steps (64) another step
    # and its greedy score (44) do not fit in 100, so the second step scores its greedy prompt last.
    ctx, backend, best = _run(scripted_context, budget=100)
    stats = ctx.stats["rlprompt"]
    assert (stats["prompts_per_step"], stats["batch_size"], stats["steps_run"]) == (4, 8, 2)
    assert ctx.stats["stopped_by"] == "budget" and not ctx.stats.get("budget_exhausted")
    assert backend.calls <= 2 * 32 + 12
    assert [op for *_, op in ctx.recorder.candidates][-1] == "rlprompt:greedy"
    assert ctx.best("train")[0] == best


def test_scripted_model_small_budget_shrinks_the_batch_first(scripted_context):
    ctx, backend, _ = _run(scripted_context, budget=30)
    stats = ctx.stats["rlprompt"]
    assert (stats["prompts_per_step"], stats["batch_size"]) == (4, 4)  # 4 x 4 + 12 <= 30
    assert backend.calls <= 30


def test_scripted_model_lineage_and_splits(scripted_context):
    ctx, _, _ = _run(scripted_context, budget=None, steps=6, eval_every=3)
    ops = {op for *_, op in ctx.recorder.candidates}
    assert ops == {"rlprompt:sample", "rlprompt:greedy"}
    assert all(parents == (ctx.initial.id,) for _, _, parents, _ in ctx.recorder.candidates)
    train_ids = {e.id for e in ctx.train}
    for _, split, ids in ctx.recorder.scored:
        assert split in ("train", "train-batch") and set(ids) <= train_ids
        assert len(ids) == (12 if split == "train" else 8)
    greedy = {pid for pid, *_, op in ctx.recorder.candidates if op == "rlprompt:greedy"}
    assert {pid for pid, split, _ in ctx.recorder.scored if split == "train"} == greedy
    assert all(text.startswith("Classify the review. ") for _, text, _, _ in ctx.recorder.candidates)


def test_scripted_model_rerun_on_the_same_cache_is_free_and_identical(scripted_context):
    ctx_a, backend_a, best_a = _run(scripted_context, budget=150, seed=1)
    ctx_b, backend_b, best_b = _run(scripted_context, budget=150, seed=1)
    assert backend_a.calls > 0 and backend_b.calls == 0
    assert best_a == best_b and ctx_a.recorder.candidates == ctx_b.recorder.candidates
    other, _, _ = _run(scripted_context, budget=150, seed=2, cache_name="other.sqlite")
    assert other.recorder.candidates != ctx_a.recorder.candidates
