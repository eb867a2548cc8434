"""What an optimizer sees: a Context (task, evaluator, data, seeded rng, recorder) and nothing else;
and the shape of a method: ``setup(ctx) -> state``, then ``step(ctx, state)`` until the method is
done or a stopper (``stopping``) ends the run.

Optimizers never touch a backend or the store. They must be deterministic for a given seed: all
randomness comes from ``ctx.rng`` and iteration order never depends on string hashing, so a
killed run resumes by replaying every completed call from the cache. Per-run state lives in the
state object (and ``ctx``), never on the optimizer: one instance can run twice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from promptgym.data.dataset import Example
from promptgym.errors import BudgetExhausted, PromptgymError
from promptgym.evaluation.evaluator import EvalResult, Evaluator
from promptgym.models.base import GenerationRequest
from promptgym.optimizers.params import Param, validate
from promptgym.optimizers.stopping import Stop, Stopper
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import Task


class Recorder:
    """Where a context reports candidates and scores (the run store), or nowhere."""

    def candidate(self, prompt: Prompt, parents: list[str], operation: str) -> None: ...

    def score(self, prompt: Prompt, split: str, result: EvalResult) -> None: ...

    def put_artifact(self, name: str, data: Any) -> None:
        """Method state (JSON-able), e.g. a trained policy; kept in memory when there is no store."""
        self.__dict__.setdefault("_artifacts", {})[name] = data

    def get_artifact(self, name: str) -> Any | None:
        return self.__dict__.get("_artifacts", {}).get(name)


META_EXAMPLE_SHARE = 0.5  # of the optimizer model's context: the data inputs a meta-prompt shows


def _cut(text: str, cap: int, count: Callable[[str], int]) -> str:
    """``text`` if it counts at most ``cap`` tokens, else its longest prefix that, with " ...",
    does (found by bisection on characters: one tokenisation per step)."""
    if count(text) <= cap:
        return text
    low, high = 0, len(text)  # count(text[:low] + " ...") <= cap < count(text[:high] + " ...")
    while high - low > 1:
        mid = (low + high) // 2
        if count(text[:mid].rstrip() + " ...") <= cap:
            low = mid
        else:
            high = mid
    return text[:low].rstrip() + " ..."


@dataclass
class Context:
    task: Task
    evaluator: Evaluator
    train: list[Example]
    initial: Prompt
    seed: int = 0
    dev: list[Example] = field(default_factory=list)
    recorder: Recorder = field(default_factory=Recorder)
    forbidden_ids: frozenset[str] = frozenset()  # the held-out test split
    log: Callable[[str], None] = lambda message: None
    # Called by ``Optimizer.run`` after each step with the steps done and the method's best score so
    # far: the runner's progress display reads it (methods never display anything themselves).
    on_step: Callable[[int, float | None], None] = lambda steps, best: None
    stats: dict[str, Any] = field(default_factory=dict)
    state: Any = None  # the method's state for this run (set by Optimizer.run; read after the search)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self._samples: dict[str, int] = defaultdict(int)
        self.results: dict[tuple[str, str], EvalResult] = {}
        self._order: list[tuple[str, str]] = []
        self._shown: dict[tuple[str, int], str] = {}

    def add(self, prompt: Prompt, parents: Sequence[Prompt] = (), operation: str = "") -> Prompt:
        """Record a candidate with its lineage; returns it for chaining."""
        self.recorder.candidate(prompt, [p.id for p in parents], operation)
        return prompt

    def evaluate(self, prompt: Prompt, examples: Sequence[Example], split: str = "train") -> EvalResult:
        """Score a candidate on examples the optimizer may see (never the test split)."""
        leaked = [e.id for e in examples if e.id in self.forbidden_ids]
        if leaked:
            raise PromptgymError(f"optimizer tried to evaluate on held-out examples {leaked[:3]}")
        result = self.evaluator.run_task(self.task, prompt, examples)
        self.recorder.score(prompt, split, result)
        key = (prompt.id, split)
        if key not in self.results:
            self._order.append(key)
        self.results[key] = result
        return result

    def shown(self, text: str, among: int = 1) -> str:
        """A data input as a meta-prompt shows it: whole when it fits its share of the optimizer
        model's context, else cut to that share (ending in " ..."). The share is
        ``META_EXAMPLE_SHARE`` of the context split over the ``among`` inputs shown together; the
        rest is for the meta-prompt's own text, what else it lists (instructions, scores) and the
        answer. A row that fits the task model's context can still overflow the optimizer's once a
        method shows it, several at a time, inside a meta-prompt: that ended runs. Only such long
        inputs are cut, so on ordinary data the meta-prompts (and their cached answers) stay as
        they were; a model that does not tell its context (``context_limit``) gets every input
        whole."""
        backend = self.evaluator.optimizer_model
        limit, count = getattr(backend, "context_limit", None), getattr(backend, "count_tokens", None)
        if not limit or count is None:
            return text
        cap = max(int(limit * META_EXAMPLE_SHARE) // max(among, 1), 1)
        key = (text, cap)
        if key not in self._shown:
            self._shown[key] = _cut(text, cap, count)
        return self._shown[key]

    def shown_examples(self, examples: Sequence[Example]) -> list[Example]:
        """``examples`` with their inputs as ``shown`` cuts them, all shown together."""
        return [replace(e, input=self.shown(e.input, len(examples))) for e in examples]

    def ask(self, messages: Sequence[tuple[str, str]] | None = None, *, text: str | None = None,
            n: int = 1, temperature: float = 0.7, top_p: float = 1.0, max_tokens: int = 128,
            answer_prefix: str = "", stop: Sequence[str] = ()) -> list[str]:
        """``n`` samples from the optimizer model. Asking the same thing again gives fresh samples
        (a per-request counter, seeded by the run's seed, is the sample index)."""
        base = GenerationRequest(messages=tuple(messages) if messages is not None else None, text=text,
                                 answer_prefix=answer_prefix, max_tokens=max_tokens,
                                 temperature=temperature, top_p=top_p, stop=tuple(stop))
        signature = repr(base)
        start = self._samples[signature]
        self._samples[signature] += n
        offset = self.seed * 1_000_003 if temperature > 0 else 0
        requests = [GenerationRequest(**{**base.__dict__, "sample": offset + start + k}) for k in range(n)]
        return [c.text for c in self.evaluator.generate(requests, role="optimizer")]

    def save_artifact(self, name: str, data: Any) -> None:
        """Store JSON-able method state with the run (a resumed run can reload it)."""
        self.recorder.put_artifact(name, data)

    def load_artifact(self, name: str) -> Any | None:
        return self.recorder.get_artifact(name)

    def best(self, split: str = "train") -> tuple[Prompt, float] | None:
        """Highest mean on ``split`` among evaluated candidates; the earliest wins ties."""
        best: tuple[Prompt, float] | None = None
        for key in self._order:
            if key[1] != split:
                continue
            result = self.results[key]
            if best is None or result.mean > best[1]:
                best = (result.prompt, result.mean)
        return best

    def ranked(self, split: str = "train") -> list[Prompt]:
        """Every candidate evaluated on ``split``, best mean first (the earliest wins ties): the
        method's own ranking, from which the runner takes its finalists."""
        keys = [key for key in self._order if key[1] == split]
        order = sorted(range(len(keys)), key=lambda i: (-self.results[keys[i]].mean, i))
        return [self.results[keys[i]].prompt for i in order]


@dataclass
class State:
    """One run of a method: what it carries from step to step (methods subclass it).

    ``finished`` is empty while the method has steps to take, else why it ended on its own:
    ``done`` (its plan is run) or ``budget`` (what is left cannot pay for another step)."""

    finished: str = ""


SELECTION_SPLITS = ("train", "dev")


class Optimizer:
    """Base class. Subclasses set ``name``, ``parameters`` (typed, with the paper's values; ``defaults``
    is derived from them) and implement ``setup`` and ``step``; ``result``, ``ranking`` and
    ``best_score`` when the answer is not simply the best candidate on the selection split.

    What a method is and needs is declared here, as attributes the runner reads (a method overrides
    them, as a property when they depend on its parameters):

    - ``selection_split``: where the method compares its candidates: ``train``, or ``dev``: the dev
      split when the method has one (``searches_on_dev``, or the run gives it one), else train
      (``selection``).
    - ``searches_on_dev``: the method's paper selects on a dev set of its own during the search
      (DP2O): the runner hands it the run's dev split, which is otherwise final selection's only.
    - ``uses_optimizer_model``: the method asks the optimizer model (False: the runner accepts a
      model that cannot chat there).
    - ``edits_layout``: the method switches the prompt's layout, chat layouts too (a task model
      without a chat template cannot take them).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    parameters: ClassVar[dict[str, Param]] = {}
    defaults: ClassVar[dict[str, Any]] = {}
    selection_split: ClassVar[str] = "train"
    searches_on_dev: ClassVar[bool] = False
    uses_optimizer_model: bool = True
    edits_layout: bool = False

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if "defaults" in cls.__dict__:  # would be overwritten below, silently
            raise TypeError(f"{cls.__name__}: declare typed ``parameters`` (optimizers.params.Param), "
                            "not ``defaults``")
        if cls.selection_split not in SELECTION_SPLITS:
            raise TypeError(f"{cls.__name__}: selection_split is one of {SELECTION_SPLITS}, not "
                            f"{cls.selection_split!r}")
        cls.defaults = {name: p.default for name, p in cls.parameters.items()}

    def __init__(self, **params: Any):
        self.params = validate(self.name, self.parameters, params)

    def setup(self, ctx: Context) -> State:
        """Plan the run and build its state (may already call models, e.g. score the start)."""
        raise NotImplementedError

    def step(self, ctx: Context, state: State) -> None:
        """One step of the method; sets ``state.finished`` when there is no next step."""
        raise NotImplementedError

    def selection(self, ctx: Context) -> tuple[str, list[Example]]:
        """The split this run compares candidates on, by ``selection_split``, and its examples:
        ``("dev", ctx.dev)`` when the method selects on dev and the run gives it a dev split, else
        ``("train", ctx.train)``. A method that ``searches_on_dev`` always selects on dev: it carves
        its own dev split from train when the run gives none (DP2O)."""
        if self.selection_split == "dev" and (self.searches_on_dev or ctx.dev):
            return "dev", list(ctx.dev)
        return "train", list(ctx.train)

    def result(self, ctx: Context, state: State | None) -> Prompt:
        """The method's answer so far, also when the budget ran out mid-step (``state`` is None
        when it ran out while setting up)."""
        best = ctx.best(self.selection(ctx)[0])
        return best[0] if best else ctx.initial

    def ranking(self, ctx: Context, state: State | None) -> list[Prompt]:
        """The method's candidates by its own measure, best first: final selection races the
        method's answer and the next few of these against the start (``state`` is None when the
        budget ran out while setting up)."""
        return ctx.ranked(self.selection(ctx)[0])

    def best_score(self, ctx: Context, state: State) -> float | None:
        """The method's best score so far: what the patience and target stoppers read."""
        best = ctx.best(self.selection(ctx)[0])
        return best[1] if best else None

    def shown_score(self, ctx: Context, state: State, best: float | None) -> float | None:
        """The best score the live status line shows after a step: the task metric's mean (0-1),
        which is ``best_score`` unless a method ranks by a score of its own (GRIPS)."""
        return best

    def stoppers(self) -> list[Stopper]:
        """Stoppers that are part of the method itself (e.g. OPRO's patience); the run's own
        ``Stop`` settings come on top."""
        return []

    def heldout_report(self, ctx: Context, evaluator: Evaluator, test_examples: Sequence[Example]) -> dict[str, Any]:
        """Optional extra held-out numbers, merged into the run summary. Called by the runner after
        the search with the test split; use ``evaluator.run_task(..., charge=False)``."""
        return {}

    def predict(self, ctx: Context, best: Prompt, examples: Sequence[Example]) -> list[dict[str, Any]]:
        """Answers for new inputs after a run (``promptgym predict``): the best prompt by default;
        methods with per-input prompts override this (reading their artifacts from ``ctx``)."""
        result = ctx.evaluator.run_task(ctx.task, best, examples, charge=False)
        return [{"input": e.input, "prediction": pred, "prompt_id": best.id}
                for e, pred in zip(examples, result.predictions)]

    def run(self, ctx: Context, stop: Stop | None = None) -> Prompt:
        """Set up, then step until the method is done, a stopper fires or the budget is spent;
        return the method's answer. ``ctx.stats`` gets the steps taken and what stopped the run."""
        stoppers = self.stoppers() + (stop or Stop()).stoppers()
        steps, stopped_by, ctx.state = 0, "", None
        try:
            state = ctx.state = self.setup(ctx)
            best = self.best_score(ctx, state)
            for stopper in stoppers:
                stopper.start(best)
            while not state.finished:
                self.step(ctx, state)
                steps += 1
                best = self.best_score(ctx, state)
                ctx.on_step(steps, self.shown_score(ctx, state, best))
                # every stopper sees every step (patience counts steps without improvement)
                fired = [s.name for s in stoppers if s(steps, best)]
                if fired:
                    stopped_by = fired[0]
                    break
            stopped_by = stopped_by or state.finished
        except BudgetExhausted:
            ctx.log("budget used up: keeping the best candidate found so far")
            ctx.stats["budget_exhausted"] = True
            stopped_by = "budget"
        ctx.stats.update(steps=steps, stopped_by=stopped_by)
        if ctx.state is None:  # the budget ran out while setting up: the best so far, by the base's rule
            return Optimizer.result(self, ctx, None)
        return self.result(ctx, ctx.state)


REGISTRY: dict[str, type[Optimizer]] = {}  # name -> method; ``registry`` adds the installed packages'


def register(cls: type[Optimizer]) -> type[Optimizer]:
    """Class decorator: make a method known by its ``name`` (which must be free)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a name")
    taken = REGISTRY.get(cls.name)
    if taken is not None and taken is not cls:
        raise ValueError(f"method name '{cls.name}' is taken by {taken.__module__}.{taken.__qualname__}")
    REGISTRY[cls.name] = cls
    return cls
