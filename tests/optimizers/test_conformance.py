"""Conformance suite: every registered optimizer goes through the same checks (in the spirit of
Optuna's sampler tests). A method joins by being registered; it may be skipped here only with a
stated reason (``SKIP``).

Checks: (a) the hard budget is respected exactly; (b) a fixed seed and a fresh cache give the same
result and the same sequence of model requests; (c) a run interrupted mid-way and re-run on the same
cache ends with the uninterrupted result and never sends a request twice; (d) no test input ever
reaches a model; (e) the returned prompt renders for a test example; (f) with no budget the method
runs to its own end; (g) lineage: every parent of a recorded candidate is a recorded candidate;
(h) results do not depend on PYTHONHASHSEED (two processes); (i) bad parameters fail when the
method is built, not when it runs; (j) every stopper stops it, and one instance runs twice alike.
The ways of scoring a pool of candidates (``VARIANTS``: ``candidate_eval`` races, ProTeGi's
``halving`` and ``rejects`` selectors) go through the same checks.

The model is the deterministic scripted backend (not a language model): its replies are instruction
-like sentences that vary with the request and come wrapped in whatever tag the request mentions
(<INS>, <START>/<END>, <prompt>), so every method finds candidates to score.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from promptgym.data.dataset import Example
from promptgym.errors import PromptgymError
from promptgym.evaluation.cache import ResponseCache
from promptgym.evaluation.evaluator import Budget, Evaluator
from promptgym.models.base import GenerationRequest
from promptgym.models.scripted import request_text
from promptgym.optimizers import REGISTRY
from promptgym.optimizers.base import Context, Recorder
from promptgym.optimizers.stopping import Stop
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import ChoiceTask
from support import RecordingBackend, make_examples

LABELS = ("positive", "negative", "neutral", "ambivalent")  # as in conftest.make_examples

SKIP: dict[str, str] = {}  # method name -> why the synthetic setup cannot run it

VERBS = ("Classify", "Label", "Decide the sentiment of", "Read and judge", "Categorise", "Rate",
         "Assess", "Tag")
OBJECTS = ("the review", "this customer review", "the text", "the sentence", "the opinion below",
           "each input")
ENDINGS = ("as positive, negative, neutral or ambivalent.", "as positive or negative.",
           "and answer with one word.", "by the feeling it expresses.", "as neutral or ambivalent.",
           "carefully, then give its label.", "with the best matching label.")
TAGS = (("<INS>", "</INS>"), ("<START>", "<END>"), ("<prompt>", "</prompt>"))


def _pick(options: tuple[str, ...], digest: int, salt: int) -> str:
    return options[(digest // salt) % len(options)]


def scripted_reply(request: GenerationRequest) -> str:
    """An instruction chosen by a hash of the request, in the tag the request asks for."""
    text = request_text(request)
    digest = int(hashlib.sha256(repr(request).encode()).hexdigest()[:12], 16)
    sentence = f"{_pick(VERBS, digest, 1)} {_pick(OBJECTS, digest, 7)} {_pick(ENDINGS, digest, 41)}"
    body = text[: len(text) - len(request.answer_prefix)] if request.answer_prefix else text
    for start, end in TAGS:
        if start.lower() in body.lower():
            prefix = "" if request.answer_prefix.strip().lower().endswith(start.lower()) else start
            return f"{prefix}{sentence}{end}"
    return sentence


def scripted_logprob(prompt: str, option: str) -> float:
    """Options the instruction (the text before the input) names score higher, plus a fixed
    pseudo-random term per (prompt, option): accuracies differ between instructions and examples,
    and the label word inside an input gives nothing away."""
    instruction = prompt.split("Input:")[0].lower()
    noise = int(hashlib.sha256(f"{prompt}|{option}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return -2.0 + 0.6 * instruction.count(option.strip().lower()) + 1.5 * noise


class ConformanceBackend(RecordingBackend):
    """The recording backend with this suite's scripted replies and option scores."""

    def __init__(self, keys: list[str] | None = None, texts: list[str] | None = None,
                 interrupt_after: int | None = None):
        super().__init__(keys, texts, interrupt_after, reply=scripted_reply, option_logprob=scripted_logprob)


def heldout_examples(n: int = 6) -> list[Example]:
    """Test examples whose inputs appear nowhere else, so a leak is visible in the request log."""
    return [Example(id=f"test{i}", input=f"HELDOUT-{i:03d} zebra quartz story, {LABELS[i % 4]} mood.",
                    targets=(LABELS[i % 4],), choices=LABELS) for i in range(n)]


def make_context(budget: int | None, backend: RecordingBackend, cache_path: Path, seed: int = 0) -> Context:
    """A Context with 8 train, 4 dev and 6 held-out examples on the scripted backend."""
    evaluator = Evaluator(backend, backend, ResponseCache(f"sqlite:///{cache_path}"), Budget(budget))
    test = heldout_examples()
    ctx = Context(task=ChoiceTask(), evaluator=evaluator, train=make_examples(8, "train"),
                  dev=make_examples(4, "dev"), initial=Prompt("Classify the review."), seed=seed,
                  forbidden_ids=frozenset(e.id for e in test))
    ctx.test_examples = test  # type: ignore[attr-defined]
    return ctx


@pytest.fixture
def build(tmp_path):
    """``build(budget, backend, cache_name, seed)`` -> Context with 8 train, 4 dev, 6 held-out."""

    def make(budget: int | None, backend: RecordingBackend, cache_name: str = "cache.sqlite",
             seed: int = 0) -> Context:
        return make_context(budget, backend, tmp_path / cache_name, seed)

    return make


# Parameter variants that change how a method scores its candidates (the shared ``candidate_eval``,
# and ProTeGi's selectors from the same module) go through every check as if they were methods.
POOL_METHODS = ("ape", "evoprompt-ga", "grips", "opro", "promptbreeder")
VARIANTS: dict[str, tuple[str, dict]] = {
    **{f"{m}[candidate_eval={s}]": (m, {"candidate_eval": s}) for m in POOL_METHODS for s in ("halving", "rejects")},
    **{f"{m}[candidate_eval=halving,saved_calls=candidates]": (m, {"candidate_eval": "halving",
                                                                   "saved_calls": "candidates"})
       for m in POOL_METHODS},
    **{f"protegi[selector={s}]": ("protegi", {"selector": s}) for s in ("halving", "rejects")},
}


def method_of(name: str) -> tuple[type, dict]:
    """A registered method's class, or a variant's class and parameters."""
    method, params = VARIANTS.get(name, (name, {}))
    return REGISTRY[method], params


def build_method(name: str):
    cls, params = method_of(name)
    return cls(**params)


def run_method(name: str, ctx: Context, stop: Stop | None = None) -> Prompt:
    if name in SKIP:
        pytest.skip(SKIP[name])
    return build_method(name).run(ctx, stop)


METHODS = sorted(REGISTRY) + list(VARIANTS)


@pytest.mark.parametrize("budget", [5, 40, 150])
@pytest.mark.parametrize("name", METHODS)
def test_budget_respected_exactly(name, budget, build):
    backend = ConformanceBackend()
    ctx = build(budget, backend)
    run_method(name, ctx)
    assert len(backend.keys) <= budget
    assert ctx.evaluator.budget.spent == len(backend.keys)
    exhausted = ctx.stats.get("budget_exhausted", False)
    # Either the whole budget went, or the method finished on its own before it ran out.
    assert (exhausted and len(backend.keys) == budget) or (not exhausted and len(backend.keys) <= budget)


@pytest.mark.parametrize("name", METHODS)
def test_deterministic_for_seed_and_fresh_cache(name, build):
    runs = []
    for attempt in range(2):
        backend = ConformanceBackend()
        ctx = build(120, backend, cache_name=f"fresh{attempt}.sqlite", seed=3)
        best = run_method(name, ctx)
        runs.append((best, backend.keys))
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] == runs[1][1]
    assert runs[0][1], "the method made no model call at all"


@pytest.mark.parametrize("name", METHODS)
def test_resume_after_interruption(name, build):
    budget = 120
    whole = ConformanceBackend()
    expected = run_method(name, build(budget, whole, cache_name="whole.sqlite"))
    if len(whole.keys) < 2:
        pytest.skip("the run makes fewer than 2 calls; nothing to interrupt")
    k = len(whole.keys) // 2

    keys: list[str] = []
    first = build(budget, ConformanceBackend(keys, interrupt_after=k), cache_name="resumed.sqlite")
    with pytest.raises(KeyboardInterrupt):
        run_method(name, first)
    assert len(keys) == k
    # The rerun, as api.resume does it: the same cache, the budget already charged carried over.
    again = build(budget, ConformanceBackend(keys), cache_name="resumed.sqlite")
    again.evaluator.budget.spent = first.evaluator.budget.spent
    result = run_method(name, again)
    assert result == expected
    assert len(keys) == len(set(keys)), "a request was sent to the backend twice"
    assert keys == whole.keys


@pytest.mark.parametrize("name", METHODS)
def test_never_sees_test_examples(name, build):
    backend = ConformanceBackend()
    ctx = build(150, backend)
    run_method(name, ctx)
    assert backend.texts
    leaked = [t for t in backend.texts if "HELDOUT-" in t]
    assert not leaked, f"test inputs reached the model: {leaked[0][:200]}"


@pytest.mark.parametrize("name", METHODS)
def test_returned_prompt_renders(name, build):
    ctx = build(150, ConformanceBackend())
    best = run_method(name, ctx)
    assert isinstance(best, Prompt) and best.instruction.strip()
    example = ctx.test_examples[0]  # type: ignore[attr-defined]
    rendered = best.render(example.input, options=list(example.choices or ()))
    assert rendered.messages or rendered.text
    ctx.task.request(best, example)  # the task can build a model request from it
    assert Prompt.from_dict(best.to_dict()) == best  # and it survives the run store round trip


@pytest.mark.parametrize("name", METHODS)
def test_runs_to_its_own_end_without_a_budget(name, build):
    backend = ConformanceBackend()
    ctx = build(None, backend)
    best = run_method(name, ctx)
    assert isinstance(best, Prompt) and backend.keys
    own = ["done"] + [s.name for s in build_method(name).stoppers()]  # e.g. OPRO's patience
    assert ctx.stats["stopped_by"] in own and not ctx.stats.get("budget_exhausted")


class LineageRecorder(Recorder):
    def __init__(self):
        self.candidates: dict[str, list[str]] = {}

    def candidate(self, prompt, parents, operation):
        self.candidates.setdefault(prompt.id, list(parents))


@pytest.mark.parametrize("budget", [40, None])
@pytest.mark.parametrize("name", METHODS)
def test_every_parent_is_a_recorded_candidate(name, budget, build):
    ctx = build(budget, ConformanceBackend())
    ctx.recorder = recorder = LineageRecorder()
    recorder.candidate(ctx.initial, [], "initial")  # as the runner does
    best = run_method(name, ctx)
    assert len(recorder.candidates) > 1 or best == ctx.initial
    missing = {p for parents in recorder.candidates.values() for p in parents} - set(recorder.candidates)
    assert not missing, f"parents never recorded as candidates: {sorted(missing)[:3]}"
    assert best.id in recorder.candidates


def fingerprints(names: list[str], cache_dir: str) -> dict[str, str]:
    """Per method: a hash of the request keys and the result of one run (budget 150, seed 1)."""
    out = {}
    for name in names:
        backend = ConformanceBackend()
        ctx = make_context(150, backend, Path(cache_dir) / f"{name}.sqlite", seed=1)
        best = build_method(name).run(ctx)
        out[name] = hashlib.sha256(json.dumps([backend.keys, best.to_dict()]).encode()).hexdigest()
    return out


@pytest.fixture(scope="module")
def hash_seed_runs(tmp_path_factory) -> list[dict[str, str]]:
    """Every method run in two processes with different PYTHONHASHSEED (string hashing, hence set
    and dict-of-set order, differs between them)."""
    here = Path(__file__).resolve().parent
    code = ("import json, sys; sys.path[:0] = sys.argv[1:3]; from test_conformance import fingerprints; "
            "print(json.dumps(fingerprints(json.loads(sys.argv[3]), sys.argv[4])))")
    runs = []
    for seed in ("1", "4242"):
        cache = tmp_path_factory.mktemp(f"hashseed{seed}")
        env = dict(os.environ, PYTHONHASHSEED=seed, PROMPTGYM_HOME=str(cache))
        done = subprocess.run([sys.executable, "-c", code, str(here), str(here.parent), json.dumps(METHODS), str(cache)],
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return runs


@pytest.mark.parametrize("name", METHODS)
def test_independent_of_python_hash_seed(name, hash_seed_runs):
    if name in SKIP:
        pytest.skip(SKIP[name])
    first, second = hash_seed_runs
    assert first[name] == second[name]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_bad_parameters_fail_at_construction(name):
    cls = REGISTRY[name]
    with pytest.raises(PromptgymError, match="no_such_parameter"):
        cls(no_such_parameter=1)
    # every text parameter names one of a few choices: a value outside them is refused at once
    for key, default in cls.defaults.items():
        if isinstance(default, str):
            with pytest.raises(PromptgymError, match=key):
                cls(**{key: "no-such-choice"})


def _watched(name: str) -> tuple[Callable[[], Any], list]:
    """The method (built with its variant's parameters), recording the best score the base reads
    before and after every step."""
    seen: list = []
    cls, params = method_of(name)

    class Watched(cls):  # type: ignore[misc,valid-type]
        def best_score(self, ctx, state):
            score = super().best_score(ctx, state)
            seen.append(score)
            return score

    return lambda: Watched(**params), seen


@pytest.mark.parametrize("name", METHODS)
def test_each_stopper_stops_it(name, build):
    if name in SKIP:
        pytest.skip(SKIP[name])
    for stop, stopper in ((Stop(max_steps=1), "max_steps"), (Stop(max_seconds=0), "wall_time")):
        ctx = build(None, ConformanceBackend())
        build_method(name).run(ctx, stop)
        assert (ctx.stats["steps"], ctx.stats["stopped_by"]) == (1, stopper)

    # target: the first step after which the method has a best score at or above it
    watched, seen = _watched(name)
    ctx = build(None, ConformanceBackend())
    watched().run(ctx, Stop(target=-1.0))
    first = next(i for i, s in enumerate(seen[1:], 1) if s is not None)
    assert (ctx.stats["steps"], ctx.stats["stopped_by"]) == (first, "target")

    # patience 1: the first step that does not raise the best, or the method's own end
    watched, seen = _watched(name)
    ctx = build(None, ConformanceBackend())
    watched().run(ctx, Stop(patience=1))
    best, flat = -float("inf") if seen[0] is None else seen[0], None
    for i, score in enumerate(seen[1:], 1):
        if score is None:
            continue
        if score > best:
            best = score
        else:
            flat = i
            break
    if flat is None:
        assert ctx.stats["stopped_by"] == "done"
    else:
        assert (ctx.stats["steps"], ctx.stats["stopped_by"]) == (flat, "patience")


@pytest.mark.parametrize("name", METHODS)
def test_one_instance_runs_twice_alike(name, build):
    if name in SKIP:
        pytest.skip(SKIP[name])
    method = build_method(name)
    runs = []
    for attempt in range(2):
        backend = ConformanceBackend()
        best = method.run(build(120, backend, cache_name=f"twice{attempt}.sqlite", seed=2))
        runs.append((best, backend.keys))
    assert runs[0] == runs[1]
