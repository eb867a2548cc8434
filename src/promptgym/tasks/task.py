"""A Task turns (prompt, example) into a model request, reads the answer, and scores it."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping, Sequence, Union

import numpy as np

from promptgym.data.dataset import Example
from promptgym.models.base import Completion, GenerationRequest, OptionScores, ScoreRequest
from promptgym.tasks.metrics import CallableMetric, ChoiceAccuracy, ExactMatch, Metric
from promptgym.tasks.parsing import match_option
from promptgym.tasks.prompt import Prompt, shows_options, with_options

Request = Union[ScoreRequest, GenerationRequest]
Response = Union[OptionScores, Completion]
Prior = Mapping[str, float]  # label -> the model's probability of it for a content-free input

# Contextual calibration (Zhao et al., ICML 2021, "Calibrate Before Use"): the inputs with no content
# whose answers show the label prior a prompt gives the model, the paper's three.
CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")


class Task:
    """Base: subclasses say which request an example needs and how its answer is read."""

    metric: Metric
    calibrate = False  # option scores divided by the prompt's label prior (ChoiceTask only)

    @property
    def calibration_calls(self) -> int:
        """Model calls a prompt's label prior costs the first time it is scored (0: no prior)."""
        return 0

    def request(self, prompt: Prompt, example: Example) -> Request:
        raise NotImplementedError

    def predict(self, prompt: Prompt, example: Example, response: Response) -> str:
        raise NotImplementedError

    def score(self, prediction: str, example: Example) -> float:
        return self.metric(prediction, example)

    def evidence(self, example: Example, response: Response) -> tuple[float | None, float | None]:
        """Soft evidence read from the answer already in hand: (probability of the right option,
        its margin over the best wrong one). None, None where there is none (generated answers)."""
        return None, None


class ChoiceTask(Task):
    """Classification / multiple choice, scored by the log-probability of each option's words.

    The prompt's verbalizers choose the word the model sees for each label. ``normalize='mean'``
    divides each option's log-probability by its token count (length normalisation), which matters
    when label words tokenise to different lengths. Options keep the example's order.
    ``scoring='generate'`` instead generates an answer and matches it to an option (for backends
    without log-probabilities); the prompt then always shows the options (``with_options``: a
    layout without them, e.g. one a method switched to, gets the options line), since a model that
    never sees the label words answers in free text that matches none of them.

    ``calibrate=True`` is contextual calibration (Zhao et al., 2021): on a small model the prompt
    alone often makes one label likelier whatever the input, so each prompt's label prior is read
    from ``CONTENT_FREE_INPUTS`` (``content_free_requests``, ``label_prior``) and divided out of every
    example's option probabilities, renormalised (the paper's W = diag(p_cf)^-1, b = 0). The
    evaluator makes those calls and passes the prior to ``predict``, ``evidence`` and
    ``probabilities``; without one they read the options as they are.
    """

    def __init__(self, normalize: str = "none", scoring: str = "logprob", max_tokens: int = 16,
                 calibrate: bool = False):
        if normalize not in ("none", "mean"):
            raise ValueError("normalize must be 'none' or 'mean'")
        if scoring not in ("logprob", "generate"):
            raise ValueError("scoring must be 'logprob' or 'generate'")
        if calibrate and scoring != "logprob":
            raise ValueError("calibrate needs scoring='logprob': it divides the options' probabilities by a prior")
        self.normalize = normalize
        self.scoring = scoring
        self.max_tokens = max_tokens
        self.calibrate = calibrate
        self.metric = ChoiceAccuracy()

    def _words(self, prompt: Prompt, example: Example) -> list[str]:
        assert example.choices, f"example {example.id} has no choices"
        return [prompt.verbalize(c) for c in example.choices]

    def request(self, prompt: Prompt, example: Example) -> Request:
        words = self._words(prompt, example)
        if self.scoring == "generate" and not shows_options(prompt.layout):
            prompt = replace(prompt, layout=with_options(prompt.layout))
        rendered = prompt.render(example.input, options=words)
        if self.scoring == "generate":
            return GenerationRequest(messages=rendered.messages, text=rendered.text,
                                     answer_prefix=rendered.answer_prefix, max_tokens=self.max_tokens)
        lead = " " if (rendered.text is not None or rendered.answer_prefix) else ""
        if rendered.answer_prefix.endswith((" ", "\n")):
            lead = ""
        return ScoreRequest(continuations=tuple(lead + w for w in words), messages=rendered.messages,
                            text=rendered.text, answer_prefix=rendered.answer_prefix)

    @property
    def calibration_calls(self) -> int:
        """Model calls a prompt's label prior costs, once per prompt and label set (0 uncalibrated)."""
        return len(CONTENT_FREE_INPUTS) if self.calibrate else 0

    def content_free_requests(self, prompt: Prompt, choices: Sequence[str]) -> list[ScoreRequest]:
        """The prompt's requests for ``CONTENT_FREE_INPUTS`` in place of an input: its instruction,
        layout, label words and demonstrations as for any example, so the prior is this prompt's."""
        return [self.request(prompt, Example(f"content-free-{i}", text, (choices[0],), tuple(choices)))  # type: ignore[misc]
                for i, text in enumerate(CONTENT_FREE_INPUTS)]

    def label_prior(self, choices: Sequence[str], responses: Sequence[OptionScores]) -> dict[str, float]:
        """The prompt's label prior p_cf: each content-free answer's class distribution
        (``probabilities``), averaged over the inputs and renormalised. Averaged as distributions,
        not as raw option probabilities as the official code does, so that one content-free input
        whose options all have a tiny probability (a long label word) weighs as much as another."""
        mean = np.mean([self.probabilities(r) for r in responses], axis=0)
        return {label: float(p) for label, p in zip(choices, mean / mean.sum())}

    @staticmethod
    def aligned(example: Example, prior: Prior | None) -> np.ndarray | None:
        """``prior`` as an array in the order of ``example``'s options (None stays None)."""
        if prior is None or not example.choices:
            return None
        return np.array([prior[c] for c in example.choices], dtype=float)

    def option_scores(self, response: OptionScores, prior: np.ndarray | None = None) -> np.ndarray:
        """Each option's log-probability (per token under ``normalize='mean'``); with ``prior`` (in
        option order) minus its log: the softmax of these is the calibrated distribution."""
        logprobs = np.asarray(response.logprobs, dtype=float)
        if self.normalize == "mean":
            logprobs = logprobs / np.maximum(np.asarray(response.token_counts, dtype=float), 1.0)
        if prior is not None:
            logprobs = logprobs - np.log(np.maximum(prior, np.finfo(float).tiny))
        return logprobs

    def probabilities(self, response: OptionScores, prior: np.ndarray | None = None) -> np.ndarray:
        """Softmax over the (possibly length-normalised) option scores: the class distribution;
        with ``prior`` (in option order) divided by it and renormalised, the calibrated one."""
        scores = self.option_scores(response, prior)
        scores = scores - scores.max()
        exp = np.exp(scores)
        return exp / exp.sum()

    def evidence(self, example: Example, response: Response,
                 prior: Prior | None = None) -> tuple[float | None, float | None]:
        """From the option scores the prediction came from (calibrated by ``prior`` when given) (so a cached answer gives the same values
        and no call is added): the softmax probability of the right option (``example.target``,
        the label ``ChoiceAccuracy`` checks) and its score minus the best wrong option's (RLPrompt's
        reward gap, here in log-probability units, length-normalised under ``normalize='mean'``).
        Continuous per example, they separate prompts that 0/1 accuracy scores alike. None, None for
        an answer generated and matched to an option, or a target that is not among the options."""
        if not isinstance(response, OptionScores) or not example.choices or example.target not in example.choices:
            return None, None
        right = list(example.choices).index(example.target)
        vector = self.aligned(example, prior)
        scores = self.option_scores(response, vector)
        wrong = np.delete(scores, right)
        margin = float(scores[right] - wrong.max()) if len(wrong) else None
        return float(self.probabilities(response, vector)[right]), margin

    def predict(self, prompt: Prompt, example: Example, response: Response, prior: Prior | None = None) -> str:
        """The option scored highest (after dividing out ``prior``, when given), or one a generated
        answer names; "" for none: a generated answer that names no option, or option scores with
        no option's token read (all at a floor: picking the first would credit a prompt with that
        option's share of the data)."""
        assert example.choices
        if isinstance(response, OptionScores):
            if response.token_counts and not any(response.token_counts):
                return ""
            return example.choices[int(np.argmax(self.option_scores(response, self.aligned(example, prior))))]
        index = match_option(response.text, self._words(prompt, example))
        return example.choices[index] if index is not None else ""


class GenerationTask(Task):
    """Free-form answers: generate, extract the answer tolerantly, score with a metric."""

    def __init__(self, metric: Metric | Callable | None = None, max_tokens: int = 32):
        if metric is None:
            metric = ExactMatch()
        elif not hasattr(metric, "name"):
            metric = CallableMetric(metric)
        self.metric = metric
        self.max_tokens = max_tokens

    def request(self, prompt: Prompt, example: Example) -> Request:
        rendered = prompt.render(example.input)
        return GenerationRequest(messages=rendered.messages, text=rendered.text,
                                 answer_prefix=rendered.answer_prefix, max_tokens=self.max_tokens,
                                 stop=("\n\n",))

    def predict(self, prompt: Prompt, example: Example, response: Response) -> str:
        assert isinstance(response, Completion)
        return response.text
