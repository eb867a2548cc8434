"""ProTeGi on the scripted model (deterministic stand-in, not a language model): bandit selection
finds the truly best arm, selectors spend equal calls, the gradient prompt shows the real errors,
the budget plan scales down, messy replies parse."""

from __future__ import annotations

import hashlib
import re

import pytest

from promptgym.errors import PromptgymError
from promptgym.models.base import GenerationRequest
from promptgym.models.scripted import ScriptedBackend, request_text
from promptgym.optimizers import get_method
from promptgym.optimizers.protegi import ANSWER_CUE, EDIT_PROMPT, ProtegiOptimizer, select
from promptgym.tasks.prompt import Prompt

LABELS = ("positive", "negative", "neutral", "ambivalent")  # conftest.make_examples
GOLD = re.compile(r"the service was (\w+) overall")


def _unit(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


# -- a synthetic bandit: arm k is right on a known fraction of examples ----------------------------

ARM_MEANS = (0.30, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70, 0.85, 0.50)
BEST_ARM = 8


def arm_logprob(prompt: str, option: str) -> float:
    """Instruction "Use strategy K." answers correctly on about ARM_MEANS[K] of the examples
    (decided by a hash of the whole request, so fixed per (arm, example))."""
    arm = int(re.search(r"Use strategy (\d+)\.", prompt).group(1))
    gold = GOLD.search(prompt).group(1)
    right = _unit(prompt) < ARM_MEANS[arm]
    wrong = next(label for label in LABELS if label != gold)
    return 0.0 if option.strip() == (gold if right else wrong) else -5.0


def arms():
    return [Prompt(f"Use strategy {k}.") for k in range(len(ARM_MEANS))]


@pytest.mark.parametrize("selector", ["ucb", "successive_rejects", "halving", "rejects"])
@pytest.mark.parametrize("seed", [0, 1])
def test_bandits_find_the_truly_best_arm(selector, seed, scripted_context):
    ctx = scripted_context(seed=seed, backend=ScriptedBackend(option_logprob=arm_logprob), train=200)
    result = select(ctx, arms(), ctx.train, allowance=600, selector=selector, keep=1, per_round=4, batch=10)
    assert result.ranking()[0] == BEST_ARM  # (also checked offline for seeds 0-11)
    # 30% of evaluating every arm on every example, less only when the arms left have seen them all
    alive = [i for i in range(len(ARM_MEANS)) if i not in result.rejected]
    assert result.requested == 600 or (result.requested < 600 and all(result.exhausted(i) for i in alive))


def test_ucb_spends_more_on_good_arms_than_on_bad(scripted_context):
    ctx = scripted_context(backend=ScriptedBackend(option_logprob=arm_logprob), train=200)
    result = select(ctx, arms(), ctx.train, allowance=600, selector="ucb", per_round=4, batch=10)
    assert result.seen[BEST_ARM] == max(result.seen)
    assert result.seen[BEST_ARM] > 3 * result.seen[0]
    assert min(result.seen) > 0  # every arm was tried


def test_successive_rejects_keeps_the_beam_and_ranks_survivors_first(scripted_context):
    ctx = scripted_context(backend=ScriptedBackend(option_logprob=arm_logprob), train=200)
    result = select(ctx, arms(), ctx.train, allowance=500, selector="successive_rejects", keep=3)
    assert len(result.rejected) == len(ARM_MEANS) - 3
    top = result.ranking()[:3]
    assert set(top).isdisjoint(result.rejected)
    assert BEST_ARM in top
    # survivors saw more examples than any rejected arm (the harmonic schedule)
    assert min(result.seen[i] for i in top) > max(result.seen[i] for i in result.rejected)


@pytest.mark.parametrize("allowance", [300, 457])
def test_selectors_spend_equal_calls(allowance, scripted_context):
    spent = {}
    for selector in ("uniform", "ucb", "successive_rejects", "halving", "rejects"):
        ctx = scripted_context(backend=ScriptedBackend(option_logprob=arm_logprob), train=200,
                               cache_name=f"{selector}-{allowance}.sqlite")
        result = select(ctx, arms(), ctx.train, allowance=allowance, selector=selector, keep=4)
        spent[selector] = (result.requested, ctx.evaluator.budget.spent)
    assert set(spent.values()) == {(allowance, allowance)}, spent


def test_uniform_is_even(scripted_context):
    ctx = scripted_context(backend=ScriptedBackend(option_logprob=arm_logprob), train=200)
    result = select(ctx, arms(), ctx.train, allowance=105, selector="uniform")
    assert sorted(result.seen) == [10] * 5 + [11] * 5


def test_selection_stops_when_every_arm_has_seen_everything(scripted_context):
    ctx = scripted_context(backend=ScriptedBackend(option_logprob=arm_logprob), train=12)
    for selector in ("uniform", "ucb", "successive_rejects", "halving", "rejects"):
        result = select(ctx, arms(), ctx.train, allowance=10_000, selector=selector, keep=2)
        assert result.requested <= len(ARM_MEANS) * 12
    ucb = select(ctx, arms(), ctx.train, allowance=10_000, selector="ucb")
    assert ucb.seen == [12] * len(ARM_MEANS)  # exact means; and cached: no new charge
    assert ucb.ranking()[0] == max(range(len(ARM_MEANS)), key=lambda i: (ucb.mean(i), -i))


def test_unknown_selector_is_refused(scripted_context):
    with pytest.raises(PromptgymError):
        ProtegiOptimizer(selector="thompson").run(scripted_context(budget=50))
    assert "selector" in get_method("protegi").defaults


# -- the whole method on a task where one fix is known ----------------------------------------------


class Tutor:
    """Scripted optimizer replies: a reason, an edit that names the missing label, paraphrases.
    The task model gets 'neutral' examples right only when the instruction names 'neutral'."""

    REASON = "It never mentions that a review can be neutral."
    FIX = "Classify the review as positive, negative, neutral or ambivalent."

    def __init__(self):
        self.requests: list[str] = []

    def reply(self, request: GenerationRequest) -> str:
        text = request_text(request)
        self.requests.append(text)
        if "why the instruction could have led" in text:
            return f" {self.REASON}<END>"
        if "What seems to be wrong" in text:
            return f" {self.FIX}<END>"
        k = request.sample % 3
        return ["Sort each review into a sentiment class.", "Give the sentiment label of the review.",
                "Decide how the reviewer feels about it."][k]

    @staticmethod
    def logprob(prompt: str, option: str) -> float:
        instruction = prompt.split("Input:")[0].lower()
        gold = GOLD.search(prompt).group(1)
        option = option.strip()
        if gold == "neutral" and "neutral" not in instruction:
            return 0.0 if option == "positive" else -5.0  # the systematic error
        return 0.0 if option == gold else -5.0


def test_gradient_prompt_shows_the_real_errors_and_the_edit_fixes_them(scripted_context):
    tutor = Tutor()
    backend = ScriptedBackend(reply=tutor.reply, option_logprob=Tutor.logprob)
    ctx = scripted_context(budget=3000, backend=backend, train=40)
    best = ProtegiOptimizer(rounds=2).run(ctx)

    gradient_prompts = [t for t in tutor.requests if "why the instruction could have led" in t]
    assert gradient_prompts
    first = gradient_prompts[0]
    assert '"Classify the review."' in first  # the current instruction, quoted
    shown = re.findall(r"Input: (.*)\nCorrect answer: (\w+)\nModel's answer: (\w+)", first)
    assert 1 <= len(shown) <= 4  # errors_per_gradient
    for text, gold, predicted in shown:
        assert GOLD.search(text).group(1) == gold == "neutral" and predicted == "positive"
    assert "Give 1 reason why" in first and "<START>" in first

    edit_prompts = [t for t in tutor.requests if "What seems to be wrong" in t]
    assert edit_prompts and all(Tutor.REASON in t for t in edit_prompts)
    assert all(t.endswith(ANSWER_CUE) for t in edit_prompts)  # the reply is primed

    assert best.instruction == Tutor.FIX
    stats = ctx.stats["protegi"]
    assert stats["gradients"] >= 1 and stats["edits"] >= 1 and stats["paraphrases"] >= 1
    assert stats["rounds_run"] == 2


def test_no_errors_means_no_gradient_calls(scripted_context):
    tutor = Tutor()
    perfect = lambda prompt, option: 0.0 if option.strip() == GOLD.search(prompt).group(1) else -5.0  # noqa: E731
    ctx = scripted_context(budget=2000, backend=ScriptedBackend(reply=tutor.reply, option_logprob=perfect))
    ProtegiOptimizer(rounds=1).run(ctx)
    assert not [t for t in tutor.requests if "why the instruction" in t]
    assert ctx.stats["protegi"]["paraphrases"] >= 1  # still expanded by paraphrase


@pytest.mark.parametrize("selector", ["ucb", "successive_rejects", "uniform"])
def test_every_selector_gets_the_same_allowance_per_round(selector, scripted_context):
    tutor = Tutor()
    backend = ScriptedBackend(reply=tutor.reply, option_logprob=Tutor.logprob)
    ctx = scripted_context(budget=1500, backend=backend, train=40)
    ProtegiOptimizer(selector=selector, rounds=2).run(ctx)
    stats = ctx.stats["protegi"]
    allowance = stats["plan"]["allowance"]
    for row in stats["rounds"]:
        assert row["requested"] == min(allowance, row["candidates"] * 40)
    assert ctx.evaluator.budget.spent <= 1500


# -- budget plan -------------------------------------------------------------------------------


def test_plan_keeps_the_code_defaults_without_a_budget(scripted_context):
    ctx = scripted_context(budget=None, train=100)
    plan = ProtegiOptimizer().plan(ctx)
    assert (plan["rounds"], plan["beam_size"], plan["minibatch_size"], plan["allowance"],
            plan["samples_per_eval"]) == (6, 4, 64, 2048, 32)
    assert plan["n_gradients"] == 4 and plan["mc_samples_per_step"] == 2 and plan["max_expansion_factor"] == 8


@pytest.mark.parametrize("budget", [60, 300, 1000, 5000, 50_000])
def test_plan_scales_down_never_up(budget, scripted_context):
    ctx = scripted_context(budget=budget, train=30)
    defaults = ProtegiOptimizer.defaults
    plan = ProtegiOptimizer().plan(ctx)
    for key in ("rounds", "minibatch_size", "n_gradients", "mc_samples_per_step", "max_expansion_factor",
                "samples_per_eval"):
        assert 1 <= plan[key] <= defaults[key], key
    assert plan["allowance"] <= 2048
    assert plan["minibatch_size"] <= 30 and plan["samples_per_eval"] <= 30
    if budget >= 300:
        assert plan["planned_calls"] <= budget
    assert plan["allowance"] >= 4 * (1 + plan["max_expansion_factor"]) or budget < 300


def test_plan_is_the_same_when_resumed(scripted_context):
    """Planning uses the whole budget, so a resumed run (budget partly charged) plans the same."""
    fresh = scripted_context(budget=800)
    resumed = scripted_context(budget=800, cache_name="other.sqlite")
    resumed.evaluator.budget.spent = 500
    assert ProtegiOptimizer().plan(fresh) == ProtegiOptimizer().plan(resumed)


# -- parsing messy optimizer output --------------------------------------------------------------


@pytest.mark.parametrize("reply, expected", [
    (" It ignores neutral reviews.<END>\n<START>It is too short.<END>",
     ["It ignores neutral reviews.", "It is too short."]),
    ("<START>Label the review's sentiment.<END>", ["Label the review's sentiment."]),  # echoed cue
    (' "Label each review."<END> Hope this helps!', ["Label each review."]),
    (" Label each review by sentiment.\n\nThis prompt is better because", ["Label each review by sentiment."]),
    ("1. Label each review by sentiment.", ["Label each review by sentiment."]),
    ("<START>One<END><START>Two<END><START>Three<END>", ["One", "Two"]),
    ("<START><END>", []),
])
def test_parse_messy_replies(reply, expected):
    assert EDIT_PROMPT.parse(reply)[:2] == expected
