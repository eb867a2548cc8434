"""The Evaluator: hard budget, cache replay, charge=False, cache-before-return, de-duplication."""

from __future__ import annotations

import pytest

from promptgym.data.dataset import Example
from promptgym.errors import BudgetExhausted
from promptgym.evaluation.cache import ResponseCache, request_key
from promptgym.evaluation.evaluator import Budget, Evaluator
from promptgym.models.base import Completion, EmbeddingRequest, GenerationRequest, ScoreRequest
from promptgym.models.scripted import ScriptedBackend
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import ChoiceTask

from support import make_examples


def _gen(i: int) -> GenerationRequest:
    return GenerationRequest(text=f"request {i}", temperature=0.7, sample=i)


@pytest.fixture
def cache(tmp_path):
    return ResponseCache(f"sqlite:///{tmp_path / 'cache.sqlite'}")


def _evaluator(cache, limit=None, backend=None, ledger=None, on_call=None):
    backend = backend or ScriptedBackend()
    return Evaluator(backend, backend, cache, Budget(limit), ledger=ledger, on_call=on_call), backend


# -- the hard budget ---------------------------------------------------------------------------------

def test_within_budget_every_request_is_answered(cache):
    ev, backend = _evaluator(cache, limit=5)
    out = ev.generate([_gen(i) for i in range(5)])
    assert len(out) == 5 and all(isinstance(c, Completion) and c.text for c in out)
    assert backend.calls == 5 and ev.budget.spent == 5 and ev.budget.remaining == 0
    assert ev.usage.calls == 5


def test_budget_exhausted_only_after_using_exactly_the_remaining_calls(cache):
    ev, backend = _evaluator(cache, limit=7)
    ev.generate([_gen(i) for i in range(4)])
    with pytest.raises(BudgetExhausted):
        ev.generate([_gen(i) for i in range(10, 20)])
    assert backend.calls == 7
    assert ev.budget.spent == 7
    # the three calls it could afford were made and kept
    assert len(cache.lookup([request_key(backend.identity, _gen(i)) for i in range(10, 13)])) == 3
    assert cache.get(request_key(backend.identity, _gen(13))) is None
    # no further call is ever made once spent
    with pytest.raises(BudgetExhausted):
        ev.generate([_gen(99)])
    assert backend.calls == 7


def test_budget_is_never_exceeded_across_many_small_batches(cache):
    ev, backend = _evaluator(cache, limit=13)
    with pytest.raises(BudgetExhausted):
        for i in range(0, 60, 3):  # bounded: a broken budget must fail the test, not hang it
            ev.generate([_gen(i), _gen(i + 1), _gen(i + 2)])
    assert backend.calls == 13 == ev.budget.spent


def test_budget_counts_spent_calls_from_before(cache):
    ev, backend = _evaluator(cache)
    ev.budget = Budget(10, spent=8)  # a resumed run that already used 8
    with pytest.raises(BudgetExhausted):
        ev.generate([_gen(i) for i in range(5)])
    assert backend.calls == 2


def test_run_task_respects_the_budget(cache):
    ev, backend = _evaluator(cache, limit=3)
    with pytest.raises(BudgetExhausted):
        ev.run_task(ChoiceTask(), Prompt("Classify."), make_examples(8))
    assert backend.calls == 3


# -- the cache -------------------------------------------------------------------------------------

def test_cache_hits_cost_nothing_and_are_counted_as_cached(cache):
    rows = []
    events = []
    ev, backend = _evaluator(cache, limit=4, ledger=rows.extend, on_call=lambda c, ch, tokens: events.append((c, ch)))
    first = ev.generate([_gen(i) for i in range(4)])
    assert backend.calls == 4 and ev.budget.remaining == 0
    again = ev.generate([_gen(i) for i in range(4)])  # would raise if it cost anything
    assert again == first
    assert backend.calls == 4 and ev.budget.spent == 4
    assert ev.usage.calls == 4 and ev.usage.cached_calls == 4
    assert [r["cached"] for r in rows] == [False] * 4 + [True] * 4
    assert [r["charged"] for r in rows] == [True] * 4 + [False] * 4
    assert all(r["prompt_tokens"] == 0 for r in rows[4:])
    assert events == [(False, True)] * 4 + [(True, False)] * 4


def test_a_new_evaluator_on_the_same_cache_replays_for_free(cache):
    ev1, b1 = _evaluator(cache, limit=6)
    result1 = ev1.run_task(ChoiceTask(), Prompt("Classify."), make_examples(6))
    ev2, b2 = _evaluator(cache, limit=0)  # no budget at all: only replay can succeed
    result2 = ev2.run_task(ChoiceTask(), Prompt("Classify."), make_examples(6))
    assert b2.calls == 0
    assert result2.scores == result1.scores and result2.predictions == result1.predictions
    assert ev2.usage.cached_calls == 6


def test_cache_is_per_backend_identity(cache):
    a, b = ScriptedBackend(name="a"), ScriptedBackend(name="b")
    Evaluator(a, a, cache).generate([_gen(0)])
    Evaluator(b, b, cache).generate([_gen(0)])
    assert a.calls == 1 and b.calls == 1


def test_mixed_batch_pays_only_for_misses(cache):
    ev, backend = _evaluator(cache, limit=10)
    ev.generate([_gen(0), _gen(1)])
    out = ev.generate([_gen(0), _gen(5), _gen(1), _gen(6)])
    assert backend.calls == 4 and ev.budget.spent == 4
    assert ev.usage.cached_calls == 2
    assert [c.text for c in out[::2]] == [c.text for c in ev.generate([_gen(0), _gen(1)])]


# -- embeddings --------------------------------------------------------------------------------------

def test_embeddings_are_cached_in_the_ledger_and_never_charged(cache):
    rows, events = [], []
    backend = ScriptedBackend(embeddings=True)
    ev, _ = _evaluator(cache, limit=1, backend=backend, ledger=rows.extend,
                       on_call=lambda c, ch, tokens: events.append((c, ch)))
    first = ev.embed(["good food", "rude staff", "good food"])
    assert first.shape == (3, 32) and backend.calls == 2  # a text repeated in one batch is one call
    again = ev.embed(["rude staff", "good food"])
    assert backend.calls == 2 and (again == first[[1, 0]]).all()  # second call: cache hits only
    assert ev.budget.spent == 0 and ev.budget.remaining == 1
    assert (ev.usage.embeddings, ev.usage.cached_embeddings) == (2, 2)
    assert (ev.usage.calls, ev.usage.cached_calls, ev.usage.prompt_tokens) == (0, 0, 0)  # not LM calls
    assert [(r["kind"], r["role"], r["cached"], r["charged"]) for r in rows] == (
        [("embed", "task", False, False)] * 2 + [("embed", "task", True, False)] * 2)
    assert rows[0]["key"] == request_key(backend.identity, EmbeddingRequest("good food"))
    assert rows[0]["prompt_tokens"] == 2
    assert events == []  # the progress bar counts language-model calls
    fresh = ScriptedBackend(embeddings=True)
    assert (Evaluator(fresh, fresh, cache).embed(["good food"]) == first[:1]).all() and fresh.calls == 0
    assert ev.embed([]).shape == (0, 0)


def test_embeddings_come_from_the_role_model(cache):
    task, optimizer = ScriptedBackend(name="t", embeddings=True), ScriptedBackend(name="o")
    ev = Evaluator(task, optimizer, cache)
    assert ev.can_embed("task") and not ev.can_embed("optimizer")
    ev.embed(["x"])
    assert (task.calls, optimizer.calls) == (1, 0)


# -- charge=False ------------------------------------------------------------------------------------

def test_uncharged_calls_do_not_draw_on_the_budget(cache):
    rows = []
    ev, backend = _evaluator(cache, limit=2, ledger=rows.extend)
    ev.generate([_gen(i) for i in range(5)], charge=False)
    assert backend.calls == 5
    assert ev.budget.spent == 0
    assert ev.usage.calls == 5  # still counted as model calls
    assert [r["charged"] for r in rows] == [False] * 5 and not any(r["cached"] for r in rows)
    ev.generate([_gen(10), _gen(11)])  # the full budget is still there
    assert ev.budget.spent == 2


def test_uncharged_calls_work_when_the_budget_is_spent(cache):
    ev, backend = _evaluator(cache, limit=1)
    ev.generate([_gen(0)])
    result = ev.run_task(ChoiceTask(), Prompt("Classify."), make_examples(4), charge=False)
    assert len(result.scores) == 4 and backend.calls == 5


# -- persistence before use ------------------------------------------------------------------------

class CrashAfterFirst(ScriptedBackend):
    """Reports its first result, then dies (a killed process, a network error)."""

    def generate(self, requests, on_result):
        self.calls += 1
        on_result(0, Completion("first answer", prompt_tokens=3, completion_tokens=2))
        raise RuntimeError("connection lost")


def test_a_response_is_cached_before_the_caller_gets_it(cache):
    rows = []
    ev, backend = _evaluator(cache, limit=10, backend=CrashAfterFirst(), ledger=rows.extend)
    with pytest.raises(RuntimeError, match="connection lost"):
        ev.generate([_gen(0), _gen(1)])
    assert cache.get(request_key(backend.identity, _gen(0))) == Completion("first answer", 3, 2)
    assert cache.get(request_key(backend.identity, _gen(1))) is None
    assert ev.budget.spent == 1 and len(rows) == 1  # charged and in the ledger
    # a re-run (resume) replays the first answer and only pays for the second
    fresh = ScriptedBackend()
    fresh.identity = backend.identity
    ev2 = Evaluator(fresh, fresh, cache, Budget(10))
    out = ev2.generate([_gen(0), _gen(1)])
    assert out[0].text == "first answer" and fresh.calls == 1


def test_the_cache_has_the_answer_when_on_result_returns(cache):
    seen = []

    class Checking(ScriptedBackend):
        def generate(self, requests, on_result):
            for i, req in enumerate(requests):
                on_result(i, Completion(f"answer {i}"))
                seen.append(cache.get(request_key(self.identity, req)))

    ev, _ = _evaluator(cache, backend=Checking())
    ev.generate([_gen(0), _gen(1)])
    assert seen == [Completion("answer 0"), Completion("answer 1")]


# -- de-duplication --------------------------------------------------------------------------------

def test_duplicated_requests_in_one_batch_make_one_call(cache):
    ev, backend = _evaluator(cache, limit=10)
    out = ev.generate([_gen(0), _gen(1), _gen(0), _gen(0)])
    assert backend.calls == 2 and ev.budget.spent == 2
    assert out[0] == out[2] == out[3]
    assert all(o is not None for o in out)


def test_duplicated_score_requests_make_one_call(cache):
    ev, backend = _evaluator(cache, limit=10)
    req = ScoreRequest(continuations=("a", "b"), text="Pick one")
    out = ev.score([req, req, req])
    assert backend.calls == 1 and len(out) == 3 and out[0] == out[2]


def test_duplicates_fit_the_budget_of_one_call(cache):
    ev, backend = _evaluator(cache, limit=1)
    out = ev.generate([_gen(3)] * 5)  # one distinct request: affordable
    assert backend.calls == 1 and len(out) == 5


def test_usage_ledger_rows(cache):
    rows = []
    ev, backend = _evaluator(cache, ledger=rows.extend)
    ev.score([ScoreRequest(continuations=("x",), text="one two three")])
    ev.generate([GenerationRequest(text="four five")], role="task")
    assert [(r["role"], r["kind"]) for r in rows] == [("task", "score"), ("task", "generate")]
    assert rows[0]["prompt_tokens"] == 3 and rows[1]["prompt_tokens"] == 2
    assert rows[1]["completion_tokens"] > 0
    assert ev.usage.prompt_tokens == 5


# -- a kill between the cache commit and the ledger commit ---------------------------------------------

def _run_evaluator(cache, origin, recorded, rows, limit=10):
    backend = ScriptedBackend()
    ev = Evaluator(backend, backend, cache, Budget(limit), ledger=rows.extend, origin=origin, recorded=recorded)
    return ev, backend


def test_own_answer_without_ledger_row_is_recorded_as_the_call_it_was(cache):
    """Scripted model. The run made call 0 and was killed before its ledger row was written: on
    resume the answer comes from the cache (no second call) but is charged and recorded, so the
    resumed run's budget and counts equal an uninterrupted run's."""
    first_rows: list[dict] = []
    ev, backend = _run_evaluator(cache, "run-a", set(), first_rows)
    ev.generate([_gen(0)])
    assert backend.calls == 1 and first_rows[0]["cached"] is False  # (this row is the one "lost")

    resumed_rows: list[dict] = []
    ev2, backend2 = _run_evaluator(cache, "run-a", set(), resumed_rows)  # its ledger had no row
    ev2.generate([_gen(0), _gen(0), _gen(1)])
    assert backend2.calls == 1  # only request 1 reaches the model; 0 is not sent again
    assert ev2.budget.spent == 2 and ev2.usage.calls == 2 and ev2.usage.cached_calls == 1
    recovered = [r for r in resumed_rows if r["key"] == first_rows[0]["key"]]
    assert [(r["cached"], r["charged"]) for r in recovered] == [(False, True), (True, False)]


def test_recorded_or_foreign_answers_stay_free_cache_hits(cache):
    """Scripted model. Answers in the run's own ledger, and answers another run made, are free."""
    rows: list[dict] = []
    ev, _ = _run_evaluator(cache, "run-a", set(), rows)
    ev.generate([_gen(0)])
    key = rows[0]["key"]
    for origin, recorded in (("run-a", {key}), ("run-b", set()), (None, set())):
        again: list[dict] = []
        ev2, backend2 = _run_evaluator(cache, origin, recorded, again)
        ev2.generate([_gen(0)])
        assert backend2.calls == 0 and ev2.budget.spent == 0 and ev2.usage.calls == 0
        assert [(r["cached"], r["charged"]) for r in again] == [(True, False)]


def test_cache_made_before_the_origin_column_gets_it(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE responses (key VARCHAR(64) PRIMARY KEY, kind VARCHAR(16) NOT NULL, "
                "response TEXT NOT NULL, created FLOAT NOT NULL)")
    con.commit()
    con.close()
    old = ResponseCache(f"sqlite:///{path}")
    old.put("k", Completion(text="x"), origin="run-a")
    assert {k: origin for k, (_, origin) in old.lookup(["k", "missing"]).items()} == {"k": "run-a"}


# -- soft evidence ----------------------------------------------------------------------------------------

def test_run_task_keeps_probability_and_margin_and_a_cached_replay_gives_the_same_at_no_call(cache):
    import math

    table = {"positive": -1.0, "negative": -2.0, "neutral": -3.0, "ambivalent": -4.0}
    backend = ScriptedBackend(option_logprob=lambda prompt, option: table[option.strip()])
    ev, _ = _evaluator(cache, backend=backend)
    examples = make_examples(4)  # targets positive, negative, neutral, ambivalent
    first = ev.run_task(ChoiceTask(), Prompt("Classify."), examples)
    z = sum(math.exp(v) for v in table.values())
    assert first.probability == pytest.approx([math.exp(v) / z for v in table.values()])
    assert first.margin == pytest.approx([1.0, -1.0, -2.0, -3.0])  # right minus the best wrong option
    assert first.scores == [1.0, 0.0, 0.0, 0.0] and backend.calls == 4
    again = Evaluator(backend, backend, cache, Budget(None)).run_task(ChoiceTask(), Prompt("Classify."), examples)
    assert backend.calls == 4  # every answer from the cache
    assert (again.probability, again.margin) == (first.probability, first.margin)
    generated = ev.run_task(ChoiceTask(scoring="generate"), Prompt("Classify."), examples)
    assert generated.probability == [None] * 4 and generated.margin == [None] * 4


# -- calibration ------------------------------------------------------------------------------------------

# P(positive) for each input: the content-free ones give the prior 0.7 / 0.3; the reviews all lean
# positive, the negative ones less (so uncalibrated every answer is positive, calibrated every one right)
P_POSITIVE = {"N/A": 0.8, "": 0.6, "[MASK]": 0.7, "good one": 0.9, "bad one": 0.6, "fine one": 0.75, "poor one": 0.65}


def prior_backend(**kw) -> ScriptedBackend:
    """A scripted model whose option scores depend on the input only (after "Input: ")."""
    import math

    def logprob(prompt: str, option: str) -> float:
        p = P_POSITIVE[prompt.rsplit("Input: ", 1)[1]]
        return math.log(p if option.strip() == "positive" else 1 - p)

    return ScriptedBackend(option_logprob=logprob, **kw)


def _reviews():
    from promptgym.data.dataset import Example

    truth = {"good one": "positive", "bad one": "negative", "fine one": "positive", "poor one": "negative"}
    return [Example(f"r{i}", text, (label,), ("positive", "negative")) for i, (text, label) in enumerate(truth.items())]


def test_a_calibrated_task_reads_the_prompts_prior_first_with_three_charged_calls(cache):
    rows: list[dict] = []
    backend = prior_backend()
    ev = Evaluator(backend, backend, cache, Budget(None), ledger=rows.extend)
    plain = ev.run_task(ChoiceTask(), Prompt("Classify."), _reviews())
    assert plain.scores == [1.0, 0.0, 1.0, 0.0] and plain.prior is None and backend.calls == 4
    calibrated = ev.run_task(ChoiceTask(calibrate=True), Prompt("Classify."), _reviews())
    assert calibrated.scores == [1.0, 1.0, 1.0, 1.0]
    assert calibrated.prior == pytest.approx({"positive": 0.7, "negative": 0.3})
    assert calibrated.probability[1] == pytest.approx(14 / 23)  # bad one: 0.6 / 0.4 calibrated by 0.7 / 0.3
    assert backend.calls == 4 + 3  # the reviews' answers came from the cache, the prior's did not
    made = [r for r in rows if not r["cached"]]
    assert [(r["role"], r["kind"], r["charged"]) for r in made[4:]] == [("calibration", "score", True)] * 3
    assert ev.budget.spent == 7


def test_a_prompts_prior_is_read_once_and_a_rerun_on_the_same_cache_makes_no_call(cache):
    rows: list[dict] = []
    backend = prior_backend()
    task = ChoiceTask(calibrate=True)
    ev = Evaluator(backend, backend, cache, Budget(None), ledger=rows.extend)
    ev.run_task(task, Prompt("Classify."), _reviews()[:2])
    ev.run_task(task, Prompt("Classify."), _reviews()[2:])
    assert backend.calls == 3 + 4 and sum(r["role"] == "calibration" for r in rows) == 3  # no second read
    ev.run_task(task, Prompt("Classify the review."), _reviews()[:1])  # another prompt: its own prior
    assert backend.calls == 3 + 4 + 3 + 1
    again = Evaluator(backend, backend, cache, Budget(0))  # a rerun: nothing left in the budget, nothing needed
    result = again.run_task(task, Prompt("Classify."), _reviews())
    assert backend.calls == 11 and again.usage.calls == 0 and again.usage.cached_calls == 3 + 4
    assert result.scores == [1.0] * 4


def test_the_prior_of_held_out_scoring_is_not_charged_and_a_spent_budget_stops_before_the_examples(cache):
    backend = prior_backend()
    ev = Evaluator(backend, backend, cache, Budget(2))
    ev.run_task(ChoiceTask(calibrate=True), Prompt("Classify."), _reviews(), charge=False)
    assert ev.budget.spent == 0 and backend.calls == 7
    with pytest.raises(BudgetExhausted):
        ev.run_task(ChoiceTask(calibrate=True), Prompt("Other."), _reviews())
    assert backend.calls == 9  # two of the new prompt's three content-free calls, then the budget


# -- a judge -----------------------------------------------------------------------------------------

JUDGE_RUBRIC = "The answer is polite and formal."


def _judge_world(cache, limit=None, rows=None):
    """A task model that answers "Kindly ..." when the instruction says formal, a scripted judge that
    gives 5 only to answers starting with "Kindly" (the truth is known), and an optimizer model apart."""
    import re

    from promptgym.tasks.judge import RubricJudge
    from promptgym.tasks.task import GenerationTask

    def answer(request):
        text = request.messages[-1][1]
        return "Kindly wait." if "formal" in text.split("Input:")[0] else "hold on lol"

    def grade(request):
        given = re.search(r"<<<ANSWER>>>\n(.*?)\n<<<END ANSWER>>>", request.messages[-1][1], re.S).group(1)
        return " 5" if given.startswith("Kindly") else " 1"

    task_model, judge_model = ScriptedBackend(reply=answer, name="t"), ScriptedBackend(reply=grade, name="j")
    optimizer = ScriptedBackend(name="o")
    ev = Evaluator(task_model, optimizer, cache, Budget(limit), ledger=rows.extend if rows is not None else None,
                   judge_model=judge_model)
    task = GenerationTask(metric=RubricJudge(JUDGE_RUBRIC))
    examples = [Example(f"j{i}", f"wait {i} sec", (f"Please wait {i} seconds.",)) for i in range(4)]
    return ev, task, examples, (task_model, judge_model, optimizer)


def test_a_judge_scores_each_answer_after_the_task_answers_with_role_judge(cache):
    rows = []
    ev, task, examples, (task_model, judge_model, optimizer) = _judge_world(cache, rows=rows)
    formal = ev.run_task(task, Prompt("Rewrite it in a formal register."), examples)
    casual = ev.run_task(task, Prompt("Rewrite it."), examples)
    assert formal.scores == [1.0] * 4 and casual.scores == [0.0] * 4
    assert (task_model.calls, judge_model.calls, optimizer.calls) == (8, 8, 0)
    assert [r["role"] for r in rows[:8]] == ["task"] * 4 + ["judge"] * 4  # the judge after the answers
    assert all(r["charged"] and not r["cached"] for r in rows) and ev.budget.spent == 16
    assert {v.status for v in ev.verdicts.values()} == {"judged"} and len(ev.verdicts) == 8


def test_judge_calls_are_cached_and_uncharged_in_held_out_evaluation(cache):
    rows = []
    ev, task, examples, (task_model, judge_model, _) = _judge_world(cache, rows=rows)
    first = ev.run_task(task, Prompt("Rewrite it in a formal register."), examples, charge=False)
    assert ev.budget.spent == 0 and judge_model.calls == 4
    assert [(r["role"], r["charged"]) for r in rows if r["role"] == "judge"] == [("judge", False)] * 4
    replay, _, _, (task2, judge2, _) = _judge_world(cache, limit=0)  # no budget: only replay can answer
    again = replay.run_task(task, Prompt("Rewrite it in a formal register."), examples)
    assert again.scores == first.scores and (task2.calls, judge2.calls) == (0, 0)
    assert replay.usage.cached_calls == 8


def test_the_judge_draws_on_the_budget(cache):
    ev, task, examples, (task_model, judge_model, _) = _judge_world(cache, limit=6)
    with pytest.raises(BudgetExhausted):
        ev.run_task(task, Prompt("Rewrite it in a formal register."), examples)
    assert (task_model.calls, judge_model.calls) == (4, 2) and ev.budget.spent == 6


def test_without_a_judge_model_the_optimizer_model_judges(cache):
    from promptgym.tasks.judge import RubricJudge
    from promptgym.tasks.task import GenerationTask

    task_model, optimizer = ScriptedBackend(name="t"), ScriptedBackend(reply=lambda r: " 4", name="o")
    ev = Evaluator(task_model, optimizer, cache)
    result = ev.run_task(GenerationTask(metric=RubricJudge(JUDGE_RUBRIC)), Prompt("Rewrite."),
                         [Example("a", "hi", ("Hello.",))])
    assert result.scores == [0.75] and optimizer.calls == 1
