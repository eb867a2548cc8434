"""The projection before a run (``promptgym.projection``): its search rehearsal against what every
method really charges, on the conformance suite's scripted model (varied, tagged replies); how it
counts tokens; where its time comes from."""

from __future__ import annotations

import pytest

from promptgym.models.base import ScoreRequest
from promptgym.models.scripted import ScriptedBackend
from promptgym.optimizers import REGISTRY
from promptgym.optimizers.base import Context, Optimizer, State
from promptgym.projection import CHARS_PER_TOKEN, CHAT_OVERHEAD, project, token_counter
from promptgym.testing import ConformanceBackend

# A real run's search spends between the rehearsal's earliest end (patience on scores that never
# improve) and its full plan, give or take what no rehearsal can know: which of a model's proposals a
# method drops or finds twice (cached, free). Stated tolerance: 30% below the earliest end, 30% above.
BELOW, ABOVE = 0.7, 1.3


def _project(name: str, ctx, budget: int | None, backend, reserve: int = 0, select_dev=(), stop=None,
             history=(), past_runs=()):
    optimizer = REGISTRY[name]()
    method_dev = ctx.dev if optimizer.searches_on_dev else []
    return project(optimizer, ctx.task, ctx.train, method_dev, list(select_dev), ctx.test_examples, ctx.initial,
                   seed=ctx.seed, search_limit=budget, budget=budget, reserve=reserve, stop=stop,
                   task_backend=backend, optimizer_backend=backend, history=history, past_runs=past_runs)


def check_projection(optimizer: Optimizer, budget: int, build) -> None:
    """The conformance check: the projected search against what ``optimizer`` then charges."""
    backend = ConformanceBackend()
    ctx = build(budget, backend)
    method_dev = ctx.dev if optimizer.searches_on_dev else []
    projection = project(optimizer, ctx.task, ctx.train, method_dev, [], ctx.test_examples, ctx.initial, seed=0,
                         search_limit=budget, budget=budget, reserve=0, stop=None, task_backend=backend,
                         optimizer_backend=backend)
    assert backend.keys == []  # the rehearsal never reaches a model
    ctx.dev = method_dev
    optimizer.run(ctx)
    spent = ctx.evaluator.budget.spent
    least = projection.search_least.calls if projection.search_least else projection.search.calls
    assert BELOW * least <= spent <= ABOVE * projection.search.calls, (projection.to_dict(), spent)
    assert projection.search.calls <= budget


@pytest.mark.parametrize("budget", [40, 150])
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_projected_search_calls_are_what_the_method_charges(name, budget, build):
    check_projection(REGISTRY[name](), budget, build)


class Picky(Optimizer):
    """Scores a proposal only when the model's reply names a sentiment: the stand-in's never do, so
    its rehearsal scores nothing while the scripted model's replies get scored."""

    name = "picky"

    def setup(self, ctx: Context) -> State:
        return State()

    def step(self, ctx: Context, state: State) -> None:
        for reply in ctx.ask([("user", f"Write an instruction ({len(ctx.results)}).")], n=4, max_tokens=60):
            if "sentiment" in reply.lower() or "positive" in reply.lower():
                ctx.evaluate(ctx.initial.with_instruction(reply), ctx.train)
        if len(ctx.results) >= 6 or ctx.evaluator.budget.remaining < 4 + len(ctx.train):
            state.finished = "done"


def test_the_check_fails_for_a_method_the_rehearsal_misjudges(build):
    with pytest.raises(AssertionError):
        check_projection(Picky(), 150, build)


def test_a_method_that_stops_on_patience_gets_a_range(build):
    backend = ConformanceBackend()
    ctx = build(150, backend)
    projection = _project("grips", ctx, 150, backend)  # GRIPS stops after 2 iterations without a gain
    assert projection.search_least is not None and projection.search_least.calls < projection.search.calls
    assert "if its score stops improving" in "\n".join(projection.lines())
    no_patience = project(REGISTRY["grips"](patience=0), ctx.task, ctx.train, [], [], ctx.test_examples, ctx.initial,
                          seed=0, search_limit=150, budget=150, reserve=0, stop=None, task_backend=backend,
                          optimizer_backend=backend)
    assert no_patience.search_least is None


def test_selection_and_heldout_phases(build):
    backend = ConformanceBackend()
    ctx = build(150, backend)
    projection = _project("ape", ctx, 110, backend, reserve=40, select_dev=ctx.dev)
    assert projection.selection.calls == 40 and projection.charged_calls == projection.search.calls + 40
    # APE never scores the start during its search: the runner scores it on train, then on test for
    # the start and the method's own pick
    assert projection.heldout.calls == len(ctx.train) + 2 * len(ctx.test_examples)
    opro = _project("opro", ctx, 110, backend)
    assert opro.heldout.calls == 2 * len(ctx.test_examples)  # OPRO scored the start on train itself


def test_tokens_are_counted_by_the_backends_tokenizer_else_about_four_characters():
    request = ScoreRequest(("yes", "no"), messages=(("user", "Is it good? " * 10),), answer_prefix="Answer:")
    text = "Is it good? " * 10 + "Answer:"
    assert token_counter(ScriptedBackend())(request) == ScriptedBackend.count_tokens(text) + CHAT_OVERHEAD

    class Http:  # an endpoint that tells no token counts
        pass

    assert token_counter(Http())(request) == -(-len(text) // CHARS_PER_TOKEN) + CHAT_OVERHEAD

    class Templated:
        def prompt_text(self, messages, text, answer_prefix):
            return "<|im_start|>" + messages[0][1] + answer_prefix

        def tokenize(self, text):
            return text.split()

    assert token_counter(Templated())(request) == len(("<|im_start|>" + text).split())


def test_time_and_completions_come_from_past_calls_else_none(build):
    backend = ConformanceBackend()
    ctx = build(60, backend)
    bare = _project("opro", ctx, 60, backend)
    assert bare.seconds is None and "time" not in "\n".join(bare.lines())
    assert bare.completion_tokens == 100 * bare.search.optimizer_calls  # OPRO's cap, max_tokens 100
    history = ([dict(role="task", kind="score", seconds=s, completion_tokens=0) for s in (0.2, 0.3, 1.0)]
               + [dict(role="optimizer", kind="generate", seconds=s, completion_tokens=c)
                  for s, c in ((1.0, 10), (1.0, 20), (4.0, 60))])  # means: 0.5 s, 2.0 s and 30 tokens
    timed = _project("opro", ctx, 60, backend, history=history)
    calls = timed.calls
    optimizer_calls = timed.search.optimizer_calls
    assert timed.seconds == pytest.approx(0.5 * (calls - optimizer_calls) + 2.0 * optimizer_calls, abs=0.1)
    assert timed.completion_tokens == 30 * optimizer_calls
    assert "time: about" in "\n".join(timed.lines())


def test_too_few_past_calls_give_no_time(build):
    backend = ConformanceBackend()
    ctx = build(60, backend)
    history = [dict(role="task", kind="score", seconds=0.5, completion_tokens=0)] * 2
    assert _project("opro", ctx, 60, backend, history=history).seconds is None


def test_past_calls_of_the_same_method_come_first(build):
    backend = ConformanceBackend()
    ctx = build(60, backend)
    others = [dict(method="ape", role="optimizer", kind="generate", seconds=1.0, completion_tokens=10)] * 9
    own = [dict(method="opro", role="optimizer", kind="generate", seconds=3.0, completion_tokens=40)] * 5
    projection = _project("opro", ctx, 60, backend, history=others + own)
    assert projection.completion_tokens == 40 * projection.search.optimizer_calls
    assert "opro's" in projection.basis["completion"]
    fallback = _project("opro", ctx, 60, backend, history=others + own[:2])
    any_method = round((9 * 10 + 2 * 40) / 11)  # too few of its own: every method's calls, its own too
    assert fallback.completion_tokens == any_method * fallback.search.optimizer_calls
    assert "any method's" in fallback.basis["completion"]


def test_past_runs_of_the_method_scale_the_plan_and_the_reserve(build):
    backend = ConformanceBackend()
    ctx = build(150, backend)
    plain = _project("ape", ctx, 110, backend, reserve=40, select_dev=ctx.dev)
    assert plain.calibration is None and plain.search.calls == plain.search_plan.calls
    plan = plain.search_plan.calls

    def past(search: int, selection: int) -> dict:
        return dict(budget_used=search + selection, selection=dict(calls=selection), seconds=30.0, model_seconds=20.0,
                    projection=dict(search_plan=dict(calls=plan), reserve=dict(calls=40)))

    scaled = _project("ape", ctx, 110, backend, reserve=40, select_dev=ctx.dev,
                      past_runs=[past(plan // 2, 20), past(plan // 2, 10), past(plan, 40)])
    assert scaled.calibration == dict(runs=3, search=pytest.approx(0.5, abs=0.02), selection=0.5, overhead_seconds=10.0)
    assert scaled.search.calls == pytest.approx(plan / 2, abs=1) and scaled.selection.calls == 20
    assert scaled.search_plan.calls == plan and scaled.reserve.calls == 40
    assert "of its plan, as 3 past runs of ape here did" in "\n".join(scaled.lines())
    greedy = _project("ape", ctx, 110, backend, reserve=40, select_dev=ctx.dev, past_runs=[past(3 * plan, 40)])
    assert greedy.search.calls <= 110  # never more than the search may spend


def test_a_judged_task_projects_the_judges_calls_and_plans_within_the_budget(build):
    from promptgym.tasks.judge import RubricJudge
    from promptgym.tasks.task import GenerationTask

    backend = ConformanceBackend()
    ctx = build(150, backend)
    ctx.task = GenerationTask(metric=RubricJudge("The answer names the review's mood.", scoring="logprob"))
    judged = _project("ape", ctx, 120, backend, reserve=24, select_dev=ctx.dev)
    ctx.task = GenerationTask()
    plain = _project("ape", ctx, 120, backend, reserve=24, select_dev=ctx.dev)
    assert judged.heldout.calls == 2 * plain.heldout.calls  # each held-out answer judged once
    assert judged.search.calls <= 120 and judged.selection.calls == 24
    # the plan is sized for two calls per scored example: fewer proposals than without a judge
    assert judged.search.optimizer_calls < plain.search.optimizer_calls
