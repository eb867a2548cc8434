"""What a run will cost, said before it starts (as DSPy's MIPROv2 does): model calls for the search,
for final selection and for the held-out evaluation, prompt and completion tokens, and wall time
when this machine has timed the models before.

Why a rehearsal and not a formula per method: every method sizes its plan from the budget and the
data in its own ``setup`` (steps, candidates per step, minibatches) and then decides step by step
(dropped candidates, a last step cut to what is left). A second, hand-written formula per method
would drift from that code. So the search is rehearsed: the method's own code runs against a
stand-in model that answers at once (no model call, nothing stored, no run created), whose every
proposal is distinct and well-formed, the case each method plans for. The rehearsal's requests are
the real requests, rendered from the real starting prompt and examples, so their prompt tokens are
counted by the task and optimizer models' own tokenizers (about 4 characters per token where a
backend has none).

What a rehearsal cannot know, and why the numbers are "about": how many of a real model's
proposals a method drops or gets twice (a dropped one costs its generation, not its scores), when
patience or a target fires on real scores, how long real completions run, how far final selection's
race goes (its reserve, (k + 1) x dev, is the most it may spend) and whether it hands back the start
(assumed: the held-out test then scores the start and the method's own pick). This machine's past
fills in what it can: seconds per call and completion lengths are the means of past calls of the
same models (of the same method first; else no time, and completions at their ``max_tokens`` cap;
means, not medians, because a total is projected and a few long generations weigh in it), and the
plan and the reserve are scaled by what past runs of the method with these models spent of theirs,
whose wall time beyond their model calls (setup, the store) is added (``calibration``). A method that stops on its score (its own patience, ``--patience``,
``--target``) is rehearsed a second time on scores that never improve: its earliest end.
``benchmarks/projection.py`` measures the error on the embedded model
(``benchmarks/results/projection.md``).
"""

from __future__ import annotations

import copy
import hashlib
import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from promptgym.data.dataset import Example
from promptgym.errors import PromptgymError
from promptgym.evaluation.cache import request_key
from promptgym.evaluation.evaluator import Budget, Evaluator
from promptgym.models.base import (Completion, Embedding, GenerationRequest, OnResult, OptionScores,
                                   ScoreRequest)
from promptgym.optimizers.base import Context, Optimizer
from promptgym.optimizers.budget import adjusted_line
from promptgym.optimizers.stopping import Stop
from promptgym.tasks.judge import REPLY_TOKENS as JUDGE_REPLY_TOKENS
from promptgym.tasks.judge import RubricJudge, calls_per_answer
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import ChoiceTask, Task

CHARS_PER_TOKEN = 4  # where a backend has no tokenizer (an HTTP endpoint)
CHAT_OVERHEAD = 8  # tokens a chat template adds per message, roughly (a backend without its template)
REHEARSAL_LIMIT = 20_000  # stand-in calls; an unlimited budget lets OPRO plan 200 steps
MIN_SAMPLES = 3  # past calls needed before a mean speed or completion length is used

Request = GenerationRequest | ScoreRequest
TokenCounter = Callable[[Request], int]


@dataclass
class Phase:
    """One phase's projected model calls and tokens (split by model role for the search)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float | None = 0.0
    optimizer_calls: int = 0  # calls to the optimizer model (writing prompts); the rest score or answer

    def scaled(self, ratio: float, most: int | None = None) -> "Phase":
        """This phase at ``ratio`` of its calls (and tokens, time), at most ``most`` calls."""
        calls = round(self.calls * ratio) if most is None else min(round(self.calls * ratio), most)
        r = calls / self.calls if self.calls else 0.0
        return Phase(calls, round(self.prompt_tokens * r), round(self.completion_tokens * r),
                     None if self.seconds is None else self.seconds * r, round(self.optimizer_calls * r))

    def add(self, role: str, kind: str, prompt_tokens: int, completion_tokens: int,
            speeds: dict[tuple[str, str], float]) -> None:
        self.calls += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.optimizer_calls += role == "optimizer"
        speed = speeds.get((_group(role), kind))
        self.seconds = None if self.seconds is None or speed is None else self.seconds + speed


@dataclass
class Projection:
    """A run's projected cost. ``search_plan`` is what the method's own plan spends (charged) and
    ``reserve`` final selection's reserve (charged, the most it may spend); ``search`` and
    ``selection`` are the projection: the same, or scaled by what past runs of this method with these
    models spent of theirs (``calibration``). ``heldout`` is the test evaluation (not charged).
    ``seconds`` is None when this machine has not timed these models yet."""

    method: str
    budget: int | None
    search: Phase
    selection: Phase
    heldout: Phase
    steps: int  # the method's steps in the rehearsal
    stopped_by: str  # how the rehearsal ended (as ``stats.stopped_by``): done, budget, patience...
    basis: dict[str, str] = field(default_factory=dict)  # where the tokens and the time come from
    more_than: bool = False  # the rehearsal was cut at REHEARSAL_LIMIT calls: the search needs more
    # the search's earliest end when the method stops on scores that stop improving (patience,
    # target): a real run's search spends between this and ``search``; None when it cannot end early
    search_least: Phase | None = None
    search_plan: Phase = field(default_factory=Phase)
    reserve: Phase = field(default_factory=Phase)
    calibration: dict[str, Any] | None = None  # past runs: how many, and the two ratios
    # the method's parameters its plan changed to fit the budget (name -> {asked, used}), and
    # {needs, budget} when even its smallest plan does not fit (``optimizers.budget.note``)
    adjusted: dict[str, Any] = field(default_factory=dict)
    plan_short: dict[str, Any] | None = None

    @property
    def charged_calls(self) -> int:
        return self.search.calls + self.selection.calls

    @property
    def calls(self) -> int:
        return self.charged_calls + self.heldout.calls

    @property
    def prompt_tokens(self) -> int:
        return sum(p.prompt_tokens for p in self.phases)

    @property
    def completion_tokens(self) -> int:
        return sum(p.completion_tokens for p in self.phases)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def seconds(self) -> float | None:
        """Wall time: the model calls' and, from past runs of the method, the rest of a run's."""
        parts = [p.seconds for p in self.phases]
        if any(s is None for s in parts):
            return None
        overhead = (self.calibration or {}).get("overhead_seconds") or 0.0
        return round(sum(parts) + overhead, 1)  # type: ignore[arg-type]

    @property
    def phases(self) -> tuple[Phase, Phase, Phase]:
        return self.search, self.selection, self.heldout

    def to_dict(self) -> dict[str, Any]:
        """The JSON record (``--dry-run --json``; the run summary's ``projection``)."""
        return dict(method=self.method, budget=self.budget, calls=self.calls, charged_calls=self.charged_calls,
                    search=_record(self.search), selection=_record(self.selection), heldout=_record(self.heldout),
                    prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
                    seconds=self.seconds, steps=self.steps, stopped_by=self.stopped_by, basis=dict(self.basis),
                    more_than=self.more_than, search_least=_record(self.search_least) if self.search_least else None,
                    search_plan=_record(self.search_plan), reserve=_record(self.reserve), calibration=self.calibration,
                    adjusted=self.adjusted, plan_short=self.plan_short)

    def lines(self) -> list[str]:
        """The projection in words, for stderr before the run."""
        more = "more than " if self.more_than else "about "
        budget = "no budget" if self.budget is None else f"budget {self.budget}"
        s, sel, h, c = self.search, self.selection, self.heldout, self.calibration
        past = "" if not c else f", as {c['runs']} past run{'s' if c['runs'] > 1 else ''} of {self.method} here did"
        out = [f"projected for {self.method} ({budget}): {more}{self.calls} model calls, "
               f"about {_k(self.prompt_tokens)} prompt + {_k(self.completion_tokens)} completion tokens",
               f"  search: {more}{s.calls} calls ({s.optimizer_calls} writing prompts, "
               f"{s.calls - s.optimizer_calls} scoring); "
               + (f"{s.calls / self.search_plan.calls:.0%} of its plan{past}: " if c and self.search_plan.calls else "its plan: ")
               + f"{self.search_plan.calls} calls, {self.steps} step{'' if self.steps == 1 else 's'}, "
               f"ending by {'the budget' if self.stopped_by == 'budget' else self.stopped_by}"
               + (" (a method spends what dropped or repeated proposals leave on more steps)"
                  if self.stopped_by == "budget" else "")
               + (f" ({self.search_least.calls} if its score stops improving at once)" if self.search_least else ""),
               (f"  final selection: about {sel.calls} calls{past}, at most {self.reserve.calls} (its reserve)"
                if c and c.get("selection") is not None else f"  final selection: at most {sel.calls} calls (its reserve)")
               if self.reserve.calls else "  final selection: off",
               f"  held-out test: about {h.calls} calls (not charged to the budget"
               + (f"; about {duration(h.seconds)}" if h.seconds else "") + "; --test-size sizes it)"]
        cut = adjusted_line(dict(adjusted=self.adjusted, plan_short=self.plan_short), self.method)
        if cut:
            out.insert(2, f"  {cut}")
        if self.seconds is not None:
            out.append(f"  time: about {duration(self.seconds)} ({self.basis.get('seconds', '')})")
        out.append(f"  completion tokens: {self.basis.get('completion', '')}")
        return out


def project(optimizer: Optimizer, task: Task, train: Sequence[Example], method_dev: Sequence[Example],
            select_dev: Sequence[Example], test: Sequence[Example], initial: Prompt, *, seed: int,
            search_limit: int | None, budget: int | None, reserve: int, stop: Stop | None,
            task_backend: Any, optimizer_backend: Any, history: Sequence[dict[str, Any]] = (),
            past_runs: Sequence[dict[str, Any]] = ()) -> Projection:
    """Rehearse the search on the stand-in model and project the other phases (module docstring).
    ``history``: this machine's past calls of the same models (``RunStore.timed_calls``);
    ``past_runs``: past finished runs' summaries of this method with these models (``calibration``)."""
    speeds, typical, basis = _from_history(history, optimizer.name)
    count_task, count_optimizer = token_counter(task_backend), token_counter(optimizer_backend)
    task_stand_in = StandIn(getattr(task_backend, "supports_scoring", True), count_task, typical.get("task"))
    optimizer_stand_in = StandIn(True, count_optimizer, typical.get("optimizer"), name="optimizer")

    def rehearse(flat: bool) -> tuple[Phase, Context, _MemoryCache, bool]:
        search, cache = Phase(), _MemoryCache()

        def ledger(rows: list[dict[str, Any]]) -> None:
            for row in rows:
                if not row["cached"] and row["kind"] != "embed":
                    search.add(row["role"], row["kind"], row["prompt_tokens"], row["completion_tokens"], speeds)

        task_stand_in.flat = optimizer_stand_in.flat = flat
        task_stand_in.calls = optimizer_stand_in.calls = 0
        evaluator = Evaluator(task_stand_in, optimizer_stand_in, cache, Budget(search_limit), ledger=ledger)
        ctx = Context(task=_rehearsal_task(task, flat), evaluator=evaluator, train=list(train), dev=list(method_dev),
                      initial=initial, seed=seed, forbidden_ids=frozenset(e.id for e in test))
        try:
            optimizer.run(ctx, stop=stop)
            return search, ctx, cache, False
        except _RehearsalTooLong:
            return search, ctx, cache, True

    search, ctx, cache, more_than = rehearse(flat=False)
    # A method that stops when its score stops improving (its own patience, or --patience / --target)
    # may end far sooner on a real model: rehearsed again on scores that never improve, the earliest end.
    reads_scores = bool(optimizer.stoppers()) or (stop is not None and (stop.patience or stop.target is not None))
    least = rehearse(flat=True)[0] if reads_scores and not more_than else None
    stopped_by = str(ctx.stats.get("stopped_by", ""))

    def phase(prompt_examples: Sequence[tuple[Prompt, Sequence[Example]]], calls: int | None = None) -> Phase:
        """The task model's calls for these (prompt, examples), cached ones of the rehearsal free;
        ``calls``: that many calls at the mean size of one of them instead."""
        out, rows, priors = Phase(), [], set()
        for prompt, examples in prompt_examples:
            content_free = [r for r in calibration_requests(task, prompt, examples) if r not in priors]
            priors.update(content_free)  # a prompt's prior is read once
            for request in content_free + [task.request(prompt, e) for e in examples]:
                if request_key(task_stand_in.identity, request) not in cache.answers:
                    kind = "score" if isinstance(request, ScoreRequest) else "generate"
                    rows.append(("task", kind, count_task(request), task_stand_in.completion_tokens(request)))
                    # a judge's calls on the answer (its request holds the task's and the rubric, roughly)
                    rows += [("judge", judge_kind, count_task(request), JUDGE_REPLY_TOKENS)] * judge_calls
        for i in range(len(rows) if calls is None else (calls if rows else 0)):
            role, kind, p_tok, c_tok = rows[i % len(rows)]
            out.add(role, kind, p_tok, c_tok, speeds)
        return out

    judge_calls = calls_per_answer(task.metric) - 1
    judge_kind = "score" if getattr(task.metric, "scoring", None) == "logprob" else "generate"
    reserved = phase([(initial, select_dev)], calls=reserve)
    # held out: the start on train (what the search did not score there) and on test, and the
    # method's own pick on test (final selection mostly hands back the start; else one test more)
    heldout = phase([(initial, train), (initial, test), (initial, test)])
    ratios = calibration(past_runs)
    expected, selection = search, reserved
    if ratios:
        expected = search.scaled(ratios["search"], most=search_limit)
        if ratios["selection"] is not None:
            selection = reserved.scaled(ratios["selection"], most=reserve)
    return Projection(method=optimizer.name, budget=budget, search=expected, selection=selection, heldout=heldout,
                      steps=int(ctx.stats.get("steps", 0)), stopped_by=stopped_by or "done", basis=basis,
                      more_than=more_than, search_least=least if least and least.calls < search.calls else None,
                      search_plan=search, reserve=reserved, calibration=ratios,
                      adjusted=dict(ctx.stats.get("adjusted") or {}), plan_short=ctx.stats.get("plan_short"))


def calibration_requests(task: Task, prompt: Prompt, examples: Sequence[Example]) -> list[ScoreRequest]:
    """A calibrated task's content-free requests for ``prompt`` (its label prior), one set per label
    set among ``examples``, as the evaluator makes them; none for any other task. (The search's are
    rehearsed through the evaluator itself.)"""
    if not (isinstance(task, ChoiceTask) and task.calibrate):
        return []
    label_sets = dict.fromkeys(e.choices for e in examples if e.choices)
    return [r for choices in label_sets for r in task.content_free_requests(prompt, choices)]


def calibration(past_runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """What past runs of a method spent of their projection: the median of (search calls made /
    the plan's), of (selection calls made / the reserve) and of their wall seconds beyond model
    calls (``overhead_seconds``: loading, setup, the rehearsal, the store). A real model's proposals are dropped
    or repeated (so a method scores fewer than it planned) and the race drops finalists early, at
    rates a rehearsal cannot know but a method's past runs on these models show. None without
    past runs that recorded a projection."""
    search, selection, overhead = [], [], []
    for summary in past_runs:
        projection = summary.get("projection") or {}
        plan = (projection.get("search_plan") or {}).get("calls")
        reserve = (projection.get("reserve") or {}).get("calls")
        if not plan:
            continue
        select_calls = (summary.get("selection") or {}).get("calls") or 0
        search.append((summary["budget_used"] - select_calls) / plan)
        overhead.append(max(0.0, (summary.get("seconds") or 0.0) - (summary.get("model_seconds") or 0.0)))
        if reserve:
            selection.append(select_calls / reserve)
    if not search:
        return None
    return dict(runs=len(search), search=round(statistics.median(search), 3),
                selection=round(statistics.median(selection), 3) if selection else None,
                overhead_seconds=round(statistics.median(overhead), 1))


def token_counter(backend: Any) -> TokenCounter:
    """Prompt tokens of a request as ``backend`` will count them: its own template and tokenizer where
    it has them (the embedded model), else its ``count_tokens`` plus a chat overhead, else about
    4 characters per token."""
    prompt_text = getattr(backend, "prompt_text", None)
    tokenize = getattr(backend, "tokenize", None)
    count = getattr(backend, "count_tokens", None)
    memo: dict[Request, int] = {}

    def tokens(request: Request) -> int:
        if request in memo:
            return memo[request]
        n = None
        if prompt_text is not None and tokenize is not None:
            try:
                n = len(tokenize(prompt_text(request.messages, request.text, request.answer_prefix)))
            except PromptgymError:  # e.g. no chat template: counted below
                n = None
        if n is None:
            messages = request.messages or ()
            text = "\n".join(content for _, content in messages) if request.messages is not None else (request.text or "")
            text += request.answer_prefix
            overhead = CHAT_OVERHEAD * len(messages)
            n = (count(text) if count is not None else math.ceil(len(text) / CHARS_PER_TOKEN)) + overhead
        memo[request] = n
        return n

    return tokens


class StandIn:
    """The rehearsal's model: answers at once, never a model call. Each generation is a distinct,
    well-formed instruction (in the tag the request asks for, as short as its ``max_tokens`` needs),
    so no method drops it; option scores are pseudo-random per request. Its answers carry the prompt
    tokens the real model would count and the completion length projected for it."""

    max_concurrency = 1
    supports_embedding = False  # methods take their model-free encoder: embeddings are never charged

    def __init__(self, supports_scoring: bool, count: TokenCounter, typical_completion: float | None,
                 name: str = "task"):
        self.supports_scoring = supports_scoring
        self.count = count
        self.typical = typical_completion
        self.identity = f"stand-in:{name}"
        self.calls = 0
        self.flat = False  # every option scores the same: no prompt ever beats another

    def completion_tokens(self, request: Request) -> int:
        if not isinstance(request, GenerationRequest):
            return 0
        if self.typical is None:
            return request.max_tokens
        return int(round(min(self.typical, request.max_tokens)))

    def _tick(self) -> None:
        self.calls += 1
        if self.calls > REHEARSAL_LIMIT:
            raise _RehearsalTooLong()

    def generate(self, requests: Sequence[GenerationRequest], on_result: OnResult) -> None:
        for i, request in enumerate(requests):
            self._tick()
            on_result(i, Completion(_reply(request), prompt_tokens=self.count(request),
                                    completion_tokens=self.completion_tokens(request)))

    def score(self, requests: Sequence[ScoreRequest], on_result: OnResult) -> None:
        for i, request in enumerate(requests):
            self._tick()
            digest = _digest(repr(request))
            logprobs = tuple(-1.0 - (0 if self.flat else ((digest >> (4 * j)) % 16) / 8)
                             for j in range(len(request.continuations)))
            on_result(i, OptionScores(logprobs, tuple(1 for _ in logprobs), prompt_tokens=self.count(request)))

    def embed(self, requests: Sequence[Any], on_result: OnResult) -> None:  # pragma: no cover - never offered
        for i, _ in enumerate(requests):
            on_result(i, Embedding((1.0,)))

    def close(self) -> None:
        pass


class _RehearsalTooLong(Exception):
    """The rehearsal passed REHEARSAL_LIMIT stand-in calls (an unlimited budget with a long plan)."""


class _MemoryCache:
    """The rehearsal's response cache: a request asked twice is free the second time, as in a run."""

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {}

    def lookup(self, keys: list[str]) -> dict[str, tuple[Any, str | None]]:
        return {k: (self.answers[k], None) for k in keys if k in self.answers}

    def put(self, key: str, response: Any, origin: str | None = None) -> None:
        self.answers[key] = response


def _rehearsal_task(task: Task, flat: bool) -> Task:
    """The task as the rehearsal scores it: a choice task as it is (the stand-in's option scores give
    it varied accuracies, or none with ``flat``); any other with a pseudo-random score per answer
    (``flat``: 0.5), so that no code runs in a sandbox and no metric depends on the stand-in's
    made-up answers."""
    if isinstance(task, ChoiceTask):
        return task
    rehearsal = copy.copy(task)
    if isinstance(task.metric, RubricJudge):  # judged: the judge's calls are rehearsed, its scores made up
        judge = task.metric
        rehearsal.metric = _RehearsalJudge(judge.rubric, judge.source, judge.max_words, judge.order, judge.scoring,
                                           flat=flat)
        return rehearsal
    rehearsal.score = (lambda prediction, example: 0.5) if flat else (  # type: ignore[method-assign]
        lambda prediction, example: (_digest(f"{prediction}|{example.id}") % 101) / 100)
    return rehearsal


@dataclass(frozen=True)
class _RehearsalJudge(RubricJudge):
    """A judge whose replies (the stand-in's made-up words) read as a pseudo-random score (``flat``:
    0.5); its requests, and so the calls the rehearsal counts, are the real judge's."""

    flat: bool = False

    def read(self, reply: Any) -> float | None:
        return 0.5 if self.flat else (_digest(repr(reply)) % 101) / 100


_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da", "fe", "gu", "ho", "ji", "pa", "ze")
_TAGS = (("<INS>", "</INS>"), ("<START>", "<END>"), ("<prompt>", "</prompt>"))


def _word(n: int) -> str:
    return "".join(_SYLLABLES[(n >> (4 * i)) % 16] for i in range(4))


def _reply(request: GenerationRequest) -> str:
    """A distinct answer: one made-up word for a label synonym, two for a phrase, else a sentence,
    in the tag the request names (a method that parses tags finds one)."""
    digest = _digest(repr(request))
    if request.max_tokens <= 10:
        return _word(digest)
    if request.max_tokens <= 30:
        return f"{_word(digest)} {_word(digest >> 16)}"
    sentence = (f"Read the input with {_word(digest)} care and answer with the {_word(digest >> 16)} "
                "label that fits it best.")
    asked = " ".join(content for _, content in (request.messages or ())) + (request.text or "")
    for start, end in _TAGS:
        if start.lower() in asked.lower():
            opened = request.answer_prefix.strip().lower().endswith(start.lower())
            return f"{'' if opened else start}{sentence}{end}"
    return sentence


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)


def _group(role: str) -> str:
    """Speeds are per model: the optimizer model's calls, or the task model's (search, selection, test)."""
    return "optimizer" if role == "optimizer" else "task"


def _from_history(history: Sequence[dict[str, Any]], method: str) -> tuple[dict[tuple[str, str], float],
                                                                             dict[str, float], dict[str, str]]:
    """Mean seconds per uncached call by (model role, kind) and mean completion tokens of a
    generation by role, from past calls: of this method where there are ``MIN_SAMPLES`` or more
    (its meta-prompts and stop rules set how long its generations run), else of any method; each
    only from ``MIN_SAMPLES`` calls or more."""
    own = [row for row in history if row.get("method") == method]
    seconds: dict[str, dict[tuple[str, str], list[float]]] = {"own": {}, "any": {}}
    completions: dict[str, dict[str, list[int]]] = {"own": {}, "any": {}}
    for which, rows in (("own", own), ("any", history)):
        for row in rows:
            seconds[which].setdefault((_group(row["role"]), row["kind"]), []).append(float(row["seconds"]))
            if row["kind"] == "generate":
                completions[which].setdefault(_group(row["role"]), []).append(int(row["completion_tokens"]))

    def means(samples: dict[str, dict[Any, list]]) -> tuple[dict[Any, float], set[str]]:
        out: dict[Any, float] = {}
        used: set[str] = set()
        for key in set(samples["own"]) | set(samples["any"]):
            which = next((w for w in ("own", "any") if len(samples[w].get(key, [])) >= MIN_SAMPLES), None)
            if which is not None:
                out[key] = float(statistics.fmean(samples[which][key]))
                used.add(which)
        return out, used

    speeds, speeds_from = means(seconds)
    typical, typical_from = means(completions)
    whose = {"own": f"{method}'s", "any": "any method's"}
    basis = {"seconds": ("mean seconds per call of these models' past calls on this machine: "
                         + " and ".join(whose[w] for w in ("own", "any") if w in speeds_from)) if speeds else "",
             "completion": ("each the mean length of these models' past generations ("
                            + " and ".join(whose[w] for w in ("own", "any") if w in typical_from)
                            + "), at most its cap") if typical
             else "each at its cap (max_tokens): an upper bound"}
    return speeds, typical, basis


def _record(phase: Phase) -> dict[str, Any]:
    record = asdict(phase)
    record["seconds"] = None if phase.seconds is None else round(phase.seconds, 1)
    return record


def _k(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {sec} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
