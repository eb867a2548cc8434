"""ChoiceTask (log-prob and generate scoring) and GenerationTask with metrics."""

from __future__ import annotations

import numpy as np
import pytest

from promptgym.data.dataset import Example
from promptgym.evaluation.cache import ResponseCache
from promptgym.evaluation.evaluator import Evaluator
from promptgym.models.base import Completion, GenerationRequest, OptionScores, ScoreRequest
from promptgym.models.scripted import ScriptedBackend
from promptgym.tasks.metrics import CallableMetric, ExactMatch
from promptgym.tasks.prompt import LAYOUTS, Prompt
from promptgym.tasks.task import ChoiceTask, GenerationTask

LABELS = ("positive", "negative", "neutral")
EX = Example(id="e1", input="The soup was cold.", targets=("negative",), choices=LABELS)


# -- ChoiceTask, log-prob scoring -----------------------------------------------------------------

def test_choice_request_is_a_score_request_with_verbalized_options():
    prompt = Prompt("Classify.", verbalizers=(("positive", "good"), ("negative", "bad")))
    req = ChoiceTask().request(prompt, EX)
    assert isinstance(req, ScoreRequest)
    assert req.continuations == ("good", "bad", "neutral")  # example order, verbalized; chat: no lead space
    assert req.messages == prompt.render(EX.input, options=["good", "bad", "neutral"]).messages
    assert req.text is None


def test_choice_request_on_plain_layout_scores_words_after_a_space():
    req = ChoiceTask().request(Prompt("Classify.", layout=LAYOUTS["plain"]), EX)
    assert req.text.endswith("Answer:")
    assert req.continuations == (" positive", " negative", " neutral")


def test_predict_takes_the_argmax_and_returns_the_label_not_the_word():
    prompt = Prompt("Classify.", verbalizers=(("negative", "bad"),))
    task = ChoiceTask()
    resp = OptionScores(logprobs=(-3.0, -0.5, -2.0), token_counts=(1, 1, 1))
    assert task.predict(prompt, EX, resp) == "negative"
    assert task.score("negative", EX) == 1.0
    assert task.score("positive", EX) == 0.0


def test_scores_with_no_option_read_name_no_option():
    """A served model's first answer token listed none of the options: every score is a floor, so
    there is no answer (scored 0), not the first option by a tie."""
    task = ChoiceTask()
    floored = OptionScores(logprobs=(-9.0, -9.0, -9.0), token_counts=(0, 0, 0))
    assert task.predict(Prompt("Classify."), EX, floored) == ""
    one_read = OptionScores(logprobs=(-9.0, -8.0, -9.0), token_counts=(0, 1, 0))
    assert task.predict(Prompt("Classify."), EX, one_read) == "negative"


def test_length_normalisation_changes_the_argmax_when_token_counts_differ():
    # option 0: one token at -3; option 1: four tokens summing to -4 (-1 per token)
    resp = OptionScores(logprobs=(-3.0, -4.0, -9.0), token_counts=(1, 4, 1))
    prompt = Prompt("Classify.")
    assert ChoiceTask(normalize="none").predict(prompt, EX, resp) == "positive"
    assert ChoiceTask(normalize="mean").predict(prompt, EX, resp) == "negative"
    np.testing.assert_allclose(ChoiceTask(normalize="mean").option_scores(resp), [-3.0, -1.0, -9.0])


def test_probabilities_are_a_softmax_over_option_scores():
    resp = OptionScores(logprobs=(np.log(0.2), np.log(0.6), np.log(0.2)), token_counts=(1, 1, 1))
    probs = ChoiceTask().probabilities(resp)
    np.testing.assert_allclose(probs, [0.2, 0.6, 0.2])
    big = OptionScores(logprobs=(-1000.0, -1001.0), token_counts=(1, 1))
    assert np.isfinite(ChoiceTask().probabilities(big)).all()


def test_choice_task_rejects_bad_settings():
    with pytest.raises(ValueError):
        ChoiceTask(normalize="sum")
    with pytest.raises(ValueError):
        ChoiceTask(scoring="vibes")


# -- ChoiceTask, generate scoring ------------------------------------------------------------------

def test_generate_mode_request_and_matching():
    task = ChoiceTask(scoring="generate", max_tokens=7)
    prompt = Prompt("Classify.", verbalizers=(("negative", "bad"),))
    req = task.request(prompt, EX)
    assert isinstance(req, GenerationRequest) and req.max_tokens == 7
    assert task.predict(prompt, EX, Completion("Answer: Bad.")) == "negative"
    assert task.predict(prompt, EX, Completion("I'd say it is neutral overall")) == "neutral"
    assert task.predict(prompt, EX, Completion("**positive**")) == "positive"
    assert task.predict(prompt, EX, Completion("no idea")) == ""
    assert task.score("", EX) == 0.0


def test_generate_mode_through_the_evaluator(tmp_path):
    backend = ScriptedBackend(reply=lambda r: "The sentiment is negative.")
    ev = Evaluator(backend, backend, ResponseCache(f"sqlite:///{tmp_path / 'c.sqlite'}"))
    examples = [EX, Example("e2", "Lovely.", ("positive",), LABELS)]
    result = ev.run_task(ChoiceTask(scoring="generate"), Prompt("Classify."), examples)
    assert result.predictions == ["negative", "negative"]
    assert result.scores == [1.0, 0.0]
    assert result.mean == 0.5


def test_logprob_mode_through_the_evaluator(tmp_path):
    backend = ScriptedBackend(option_logprob=lambda prompt, option: 0.0 if option == "neutral" else -5.0)
    ev = Evaluator(backend, backend, ResponseCache(f"sqlite:///{tmp_path / 'c.sqlite'}"))
    result = ev.run_task(ChoiceTask(), Prompt("Classify."), [EX])
    assert result.predictions == ["neutral"] and result.scores == [0.0]
    assert backend.calls == 1  # all options in one call


# -- GenerationTask ----------------------------------------------------------------------------------

QA = Example(id="q1", input="What is 6*7?", targets=("42", "forty-two"))


def test_generation_request():
    req = GenerationTask(max_tokens=9).request(Prompt("Answer the question."), QA)
    assert isinstance(req, GenerationRequest)
    assert req.max_tokens == 9 and req.stop == ("\n\n",)
    assert "What is 6*7?" in req.messages[-1][1]


@pytest.mark.parametrize("text, expected", [
    ("42", 1.0), ("Answer: 42.", 1.0), ("The answer is 42", 1.0), ("Forty-Two!", 1.0),
    ("43", 0.0), ("", 0.0), ("I think 42", 0.0),
])
def test_exact_match(text, expected):
    task = GenerationTask()
    assert isinstance(task.metric, ExactMatch)
    pred = task.predict(Prompt("x"), QA, Completion(text))
    assert task.score(pred, QA) == expected


def test_user_callable_metric_is_wrapped_and_used():
    def contains_target(prediction: str, example: Example) -> bool:
        return example.target in prediction

    task = GenerationTask(metric=contains_target)
    assert isinstance(task.metric, CallableMetric) and task.metric.name == "contains_target"
    assert task.score("I think 42", QA) == 1.0
    assert task.score("no", QA) == 0.0
    assert GenerationTask(metric=lambda p, e: 0.25).score("x", QA) == 0.25


def test_generation_task_through_the_evaluator(tmp_path):
    backend = ScriptedBackend(reply=lambda r: "The answer is 42." if "6*7" in str(r.messages) else "7")
    ev = Evaluator(backend, backend, ResponseCache(f"sqlite:///{tmp_path / 'c.sqlite'}"))
    other = Example(id="q2", input="What is 2+2?", targets=("4",))
    result = ev.run_task(GenerationTask(), Prompt("Answer."), [QA, other])
    assert result.scores == [1.0, 0.0]
    assert result.predictions == ["The answer is 42.", "7"]


# -- soft evidence: the right option's probability and margin ------------------------------------------

def test_evidence_is_the_softmax_probability_and_margin_of_the_right_option():
    # right option (negative) -1; wrong options -2 and -3: p = e^-1 / (e^-1 + e^-2 + e^-3), margin -1 - -2
    resp = OptionScores(logprobs=(-2.0, -1.0, -3.0), token_counts=(1, 1, 1))
    p, margin = ChoiceTask().evidence(EX, resp)
    e = np.exp([-2.0, -1.0, -3.0])
    assert p == pytest.approx(e[1] / e.sum()) == pytest.approx(0.66524, abs=1e-5)
    assert margin == pytest.approx(1.0)
    # wrong prediction: the margin is negative, the probability below the best
    p, margin = ChoiceTask().evidence(EX, OptionScores((-0.5, -1.5, -3.0), (1, 1, 1)))
    assert margin == pytest.approx(-1.0) and p < 0.5


def test_evidence_follows_length_normalisation():
    # negative: 4 tokens summing to -4 (-1 each); positive -3 on one token; neutral -9
    resp = OptionScores(logprobs=(-3.0, -4.0, -9.0), token_counts=(1, 4, 1))
    p_none, m_none = ChoiceTask().evidence(EX, resp)
    p_mean, m_mean = ChoiceTask(normalize="mean").evidence(EX, resp)
    assert m_none == pytest.approx(-1.0) and m_mean == pytest.approx(2.0)  # -1 - (-3)
    e = np.exp([-3.0, -1.0, -9.0])
    assert p_mean == pytest.approx(e[1] / e.sum()) and p_mean > 0.5 > p_none


def test_no_evidence_for_generated_answers_or_a_target_outside_the_options():
    assert ChoiceTask(scoring="generate").evidence(EX, Completion("negative")) == (None, None)
    assert GenerationTask().evidence(EX, Completion("negative")) == (None, None)
    odd = Example("e2", "x", ("other",), LABELS)
    assert ChoiceTask().evidence(odd, OptionScores((-1.0, -2.0, -3.0), (1, 1, 1))) == (None, None)


# -- contextual calibration -----------------------------------------------------------------------

BINARY = ("positive", "negative")


def _answer(p_positive: float, scale: float = 1.0) -> OptionScores:
    """Option scores whose class distribution is (p_positive, 1 - p_positive); ``scale`` multiplies
    both probabilities (the distribution stays)."""
    return OptionScores((float(np.log(scale * p_positive)), float(np.log(scale * (1 - p_positive)))), (1, 1))


def test_the_content_free_requests_are_the_prompts_own_with_each_content_free_input():
    prompt = Prompt("Classify the review.", verbalizers=(("positive", "good"),), demos=(("Nice.", "positive"),))
    task = ChoiceTask(calibrate=True)
    requests = task.content_free_requests(prompt, BINARY)
    assert [r.messages for r in requests] == [prompt.render(text, options=["good", "negative"]).messages
                                              for text in ("N/A", "", "[MASK]")]
    assert all(r.continuations == ("good", "negative") for r in requests) and task.calibration_calls == 3
    assert ChoiceTask().calibration_calls == 0


def test_the_label_prior_is_the_mean_class_distribution_of_the_content_free_answers():
    # N/A: 0.8 / 0.2 (at a tenth of the mass), "": 0.6 / 0.4, [MASK]: 0.7 / 0.3 -> mean 0.7 / 0.3; averaging
    # raw probabilities (as the official code does) would give N/A a tenth of the weight: 0.674 / 0.326
    prior = ChoiceTask(calibrate=True).label_prior(BINARY, [_answer(0.8, scale=0.1), _answer(0.6), _answer(0.7)])
    assert prior == pytest.approx({"positive": 0.7, "negative": 0.3})


def test_a_prior_that_favours_one_label_flips_the_prediction_worked_by_hand():
    task = ChoiceTask(calibrate=True)
    example = Example("e", "Meh.", ("negative",), BINARY)
    answer = _answer(0.6)  # 0.6 / 0.4: uncalibrated, positive
    prior = {"positive": 0.7, "negative": 0.3}
    assert task.predict(Prompt("Classify."), example, answer) == "positive"
    # calibrated: 0.6 / 0.7 = 6/7 against 0.4 / 0.3 = 4/3 -> negative, with probability (4/3) / (6/7 + 4/3) = 14/23
    assert task.predict(Prompt("Classify."), example, answer, prior=prior) == "negative"
    probability, margin = task.evidence(example, answer, prior=prior)
    assert probability == pytest.approx(14 / 23) and margin == pytest.approx(np.log(14 / 9))
    assert task.evidence(example, answer) == (pytest.approx(0.4), pytest.approx(np.log(0.4 / 0.6)))
    assert task.probabilities(answer, task.aligned(example, prior)) == pytest.approx([9 / 23, 14 / 23])


def test_the_prior_follows_each_examples_option_order():
    task = ChoiceTask(calibrate=True)
    flipped = Example("e", "Meh.", ("negative",), ("negative", "positive"))
    answer = OptionScores((float(np.log(0.4)), float(np.log(0.6))), (1, 1))  # negative 0.4, positive 0.6
    assert task.predict(Prompt("x"), flipped, answer, prior={"positive": 0.7, "negative": 0.3}) == "negative"


def test_calibration_needs_log_probability_scoring():
    with pytest.raises(ValueError, match="calibrate needs scoring='logprob'"):
        ChoiceTask(scoring="generate", calibrate=True)
