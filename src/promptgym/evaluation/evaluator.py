"""The one door to every model call: cache, hard budget, usage ledger, progress.

No optimizer can forget any of these because none of them talks to a backend directly.

Embeddings go through the same door (cache, ledger rows of kind ``embed``) but are never charged
to the search budget and are not counted as language-model calls (``Usage.calls``, the summary's
``llm_calls``, the progress bar): the budget counts what the methods' papers count, generation
and scoring calls, and a method's plan and results must not depend on which encoder it uses.

Faults: a backend that counts them (the OpenAI-compatible one's ``last_faults``, kind -> count, set
just before each result) has them written on the call's ledger row (``faults``); a result marked
``failed`` (the backend gave up on a bad answer) is used and charged but never cached.

Kills: an answer is committed to the cache, then its ledger row to the run store (two files, two
commits). A run's evaluator (``origin`` = the run id, ``recorded`` = the keys of the run's own
uncached ledger rows) stamps its answers with the run, so after a kill between the two commits the
resumed run finds its own answer in the cache with no ledger row and records it then, as the call
it was (charged as it would have been), instead of taking it as a free cache hit.

Calibration: a task that calibrates its choices (``ChoiceTask(calibrate=True)``) has each prompt's
label prior read from its content-free requests, here, before the prompt's first examples are
scored: scoring calls under the ledger role ``calibration``, cached like any call, charged as the
examples they come with are (the search's are, the held-out test's are not), and made once per
prompt and label set in an evaluator's life (a resumed run finds them in the cache).

A judge (a task whose metric is a ``tasks.judge.RubricJudge``): after the task's answers, the judge
model (role ``judge``; the optimizer model when none is given) is asked for each answer's score
(generated, or its digits' log-probabilities) through the same door, so its calls are cached,
charged like the task's (not when ``charge=False``) and written to the ledger with role ``judge``;
each answer's ``Verdict`` is kept in ``verdicts``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from promptgym.data.dataset import Example
from promptgym.errors import BudgetExhausted
from promptgym.evaluation.cache import Response, ResponseCache, request_key
from promptgym.models.base import (Backend, Completion, EmbeddingRequest, GenerationRequest, OptionScores,
                                   ScoreRequest)
from promptgym.store.runs import CALIBRATION_ROLE, Usage
from promptgym.tasks.judge import RubricJudge, Verdict
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import ChoiceTask, Task

LedgerSink = Callable[[list[dict]], None]


class Budget:
    """A hard cap on uncached model calls; checked before every call, never exceeded."""

    def __init__(self, limit: int | None, spent: int = 0):
        self.limit = limit
        self.spent = spent

    @property
    def remaining(self) -> float:
        return float("inf") if self.limit is None else max(self.limit - self.spent, 0)


@dataclass
class EvalResult:
    """A prompt's scores on a list of examples, in example order.

    ``probability`` and ``margin`` are the soft evidence of a choice task scored by log-probability
    (``Task.evidence``: the right option's probability, its margin over the best wrong one), one per
    example, None where there is none; read from the same answers as the scores, at no extra call.
    Empty when a result was built without them. ``prior``: the prompt's label prior (label ->
    probability) its predictions and evidence were calibrated by, None when uncalibrated (or when
    the examples have several label sets: each was calibrated by its own)."""

    prompt: Prompt
    examples: list[Example]
    scores: list[float]
    predictions: list[str]
    responses: list[Completion | OptionScores] = field(repr=False, default_factory=list)
    probability: list[float | None] = field(default_factory=list)
    margin: list[float | None] = field(default_factory=list)
    prior: dict[str, float] | None = None

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else 0.0

    @classmethod
    def joined(cls, parts: Sequence["EvalResult"]) -> "EvalResult":
        """One prompt's results on successive batches as one result (a race scores a candidate a
        batch at a time; the store keeps one row per candidate). Soft evidence a part lacks is None."""
        def padded(values: list, part: EvalResult) -> list:
            return values if len(values) == len(part.examples) else [None] * len(part.examples)

        return cls(parts[0].prompt, [e for p in parts for e in p.examples], [s for p in parts for s in p.scores],
                   [x for p in parts for x in p.predictions], [x for p in parts for x in p.responses],
                   [x for p in parts for x in padded(p.probability, p)],
                   [x for p in parts for x in padded(p.margin, p)], parts[0].prior)


class Evaluator:
    """Runs requests through the task or optimizer model, replaying cached answers for free.

    ``charge=False`` calls (held-out evaluation by the runner) are made and counted in the ledger
    but do not draw on the search budget.
    """

    def __init__(self, task_model: Backend, optimizer_model: Backend, cache: ResponseCache,
                 budget: Budget | None = None, ledger: LedgerSink | None = None,
                 on_call: Callable[[bool, bool, int], None] | None = None, origin: str | None = None,
                 recorded: set[str] | None = None, judge_model: Backend | None = None,
                 verdicts: dict[tuple[str, str], Verdict] | None = None):
        self.task_model = task_model
        self.optimizer_model = optimizer_model
        self.judge_model = judge_model or optimizer_model
        self.verdicts = verdicts if verdicts is not None else {}  # (example id, answer) -> the judge's verdict
        self.cache = cache
        self.budget = budget or Budget(None)
        self.ledger = ledger
        self.on_call = on_call
        self.usage = Usage()
        self.origin = origin
        self.recorded = recorded if recorded is not None else set()
        self._priors: dict[tuple, dict[str, float]] = {}  # (prompt, label set, how scored) -> prior

    def _backend(self, role: str) -> Backend:
        if role == "judge":
            return self.judge_model
        return self.optimizer_model if role == "optimizer" else self.task_model

    def generate(self, requests: Sequence[GenerationRequest], role: str = "optimizer",
                 charge: bool = True) -> list[Completion]:
        backend = self._backend(role)
        return self._dispatch(backend, role, "generate", requests, charge)  # type: ignore[return-value]

    def score(self, requests: Sequence[ScoreRequest], charge: bool = True, role: str = "task") -> list[OptionScores]:
        return self._dispatch(self.task_model, role, "score", requests, charge)  # type: ignore[return-value]

    def can_embed(self, role: str = "task") -> bool:
        """Whether the role's model offers embeddings (methods fall back to a model-free encoder)."""
        return bool(self._backend(role).supports_embedding)

    def embed(self, texts: Sequence[str], role: str = "task") -> np.ndarray:
        """The role's model's vectors of ``texts``, shape (len(texts), dim); cached per text, never
        charged (see the module docstring)."""
        requests = [EmbeddingRequest(t) for t in texts]
        found = self._dispatch(self._backend(role), role, "embed", requests, charge=False)
        return np.array([e.vector for e in found], dtype=np.float64) if found else np.zeros((0, 0))

    def run_task(self, task: Task, prompt: Prompt, examples: Sequence[Example],
                 charge: bool = True) -> EvalResult:
        """Score ``prompt`` on ``examples``: one model call per example (all options at once), and
        for a calibrated task first the prompt's label prior (``label_priors``)."""
        priors = self.label_priors(task, prompt, examples, charge)
        requests = [task.request(prompt, ex) for ex in examples]
        responses: list = [None] * len(requests)
        score_idx = [i for i, r in enumerate(requests) if isinstance(r, ScoreRequest)]
        gen_idx = [i for i, r in enumerate(requests) if isinstance(r, GenerationRequest)]
        if score_idx:
            for i, resp in zip(score_idx, self.score([requests[i] for i in score_idx], charge=charge)):
                responses[i] = resp
        if gen_idx:
            outs = self.generate([requests[i] for i in gen_idx], role="task", charge=charge)  # type: ignore[misc]
            for i, resp in zip(gen_idx, outs):
                responses[i] = resp
        calibrated = [{"prior": priors[ex.choices]} if ex.choices in priors else {} for ex in examples]
        predictions = [task.predict(prompt, ex, resp, **c) for ex, resp, c in zip(examples, responses, calibrated)]
        if isinstance(task.metric, RubricJudge):
            scores = self._judged(task.metric, predictions, examples, charge)
        else:
            scores = [task.score(pred, ex) for pred, ex in zip(predictions, examples)]
        evidence = [task.evidence(ex, resp, **c) for ex, resp, c in zip(examples, responses, calibrated)]
        return EvalResult(prompt, list(examples), scores, predictions, responses,
                          [p for p, _ in evidence], [m for _, m in evidence],
                          next(iter(priors.values())) if len(priors) == 1 else None)

    def label_priors(self, task: Task, prompt: Prompt, examples: Sequence[Example],
                     charge: bool = True) -> dict[tuple[str, ...], dict[str, float]]:
        """A calibrated task's label prior for ``prompt``, per label set among ``examples`` (label
        set -> label -> probability); empty for any other task. Each costs the task's content-free
        calls the first time (role ``calibration``, charged as ``charge`` says), nothing after. A
        prompt that reasons has none: its answer is parsed from a reply, with no option scores."""
        if not (isinstance(task, ChoiceTask) and task.calibrate) or prompt.reasoning:
            return {}
        out: dict[tuple[str, ...], dict[str, float]] = {}
        for choices in dict.fromkeys(ex.choices for ex in examples if ex.choices):
            key = (prompt.id, choices, task.normalize, self.task_model.identity)
            if key not in self._priors:
                answers = self.score(task.content_free_requests(prompt, choices), charge=charge, role=CALIBRATION_ROLE)
                self._priors[key] = task.label_prior(choices, answers)
            out[choices] = self._priors[key]
        return out

    def _judged(self, judge: RubricJudge, predictions: Sequence[str], examples: Sequence[Example],
                charge: bool) -> list[float]:
        """The judge's score of each answer: its requests (none where a guard decides alone) in one
        batch to the judge model; an answer given twice on an example is one cached request."""
        asked = [judge.requests(p, ex) for p, ex in zip(predictions, examples)]
        flat = [r for rs in asked for r in rs]
        kind = "score" if flat and isinstance(flat[0], ScoreRequest) else "generate"
        replies = iter(self._dispatch(self.judge_model, "judge", kind, flat, charge) if flat else [])
        scores = []
        for prediction, example, requests in zip(predictions, examples, asked):
            verdict = judge.verdict(prediction, example, [next(replies) for _ in requests])
            self.verdicts[(example.id, prediction)] = verdict
            scores.append(verdict.score)
        return scores

    def _dispatch(self, backend: Backend, role: str, kind: str, requests: Sequence, charge: bool) -> list:
        keys = [request_key(backend.identity, r) for r in requests]
        looked_up = self.cache.lookup(keys)  # answers and the run that made each, in one read
        found = {k: response for k, (response, _) in looked_up.items()}
        results: list = [found.get(k) for k in keys]
        language_model = kind != "embed"
        lost = [] if self.origin is None else [
            k for k, (_, origin) in looked_up.items() if origin == self.origin and k not in self.recorded]
        for k in lost:  # our own answer whose ledger row a kill lost: the call it was, recorded now
            self._account(role, kind, k, found[k], charge, 0.0, None, language_model)
        cached_rows = [dict(key=k, role=role, kind=kind, cached=True, charged=False, prompt_tokens=0,
                            completion_tokens=0, seconds=0.0) for k in _without_first(keys, lost) if k in found]
        on_call = self.on_call if language_model else None
        if language_model:
            self.usage.cached_calls += len(cached_rows)
        else:
            self.usage.cached_embeddings += len(cached_rows)
        if on_call:
            for _ in cached_rows:
                on_call(True, False, 0)
        if self.ledger:
            self.ledger(cached_rows)
        positions: dict[str, list[int]] = {}  # a request repeated in one batch is one call
        for i, k in enumerate(keys):
            if results[i] is None:
                positions.setdefault(k, []).append(i)
        misses = [indices[0] for indices in positions.values()]
        allowed = misses if not charge else misses[: int(min(len(misses), self.budget.remaining))]
        if allowed:
            clock = [time.perf_counter()]

            def on_result(j: int, response: Response) -> None:
                index = allowed[j]
                key = keys[index]
                faults = dict(getattr(backend, "last_faults", None) or {})
                if not faults.get("failed"):  # a failed call is never cached as a good answer
                    self.cache.put(key, response, origin=self.origin)  # persisted before anyone uses it
                now = time.perf_counter()
                seconds, clock[0] = now - clock[0], now
                for i in positions[key]:
                    results[i] = response
                self._account(role, kind, key, response, charge, seconds, faults or None, language_model)

            batch = [requests[i] for i in allowed]
            getattr(backend, kind)(batch, on_result)  # the kinds are the Backend's method names
        if len(allowed) < len(misses):
            raise BudgetExhausted(f"budget of {self.budget.limit} model calls used up")
        return results

    def _account(self, role: str, kind: str, key: str, response: Response, charge: bool, seconds: float,
                 faults: dict | None, language_model: bool) -> None:
        """One call made: budget, usage, the ledger row, progress."""
        if charge:
            self.budget.spent += 1
        p_tok = response.prompt_tokens
        c_tok = response.completion_tokens if isinstance(response, Completion) else 0
        if language_model:
            self.usage.calls += 1
            self.usage.prompt_tokens += p_tok
            self.usage.completion_tokens += c_tok
            self.usage.seconds += seconds
        else:
            self.usage.embeddings += 1
        self.recorded.add(key)
        if self.ledger:
            self.ledger([dict(key=key, role=role, kind=kind, cached=False, charged=charge, prompt_tokens=p_tok,
                              completion_tokens=c_tok, seconds=seconds, faults=faults)])
        on_call = self.on_call if language_model else None
        if on_call:
            on_call(False, charge, p_tok + c_tok)


def _without_first(keys: list[str], drop: list[str]) -> list[str]:
    """``keys`` less the first occurrence of each key in ``drop``."""
    left = set(drop)
    out = []
    for k in keys:
        if k in left:
            left.discard(k)
        else:
            out.append(k)
    return out
