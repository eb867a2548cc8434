"""Conformance suite: every registered optimizer goes through the same checks (in the spirit of
Optuna's sampler tests). A method joins by being registered; it may be skipped here only with a
stated reason (``SKIP``).

Checks: (a) the hard budget is respected exactly; (b) a fixed seed and a fresh cache give the same
result and the same sequence of model requests; (c) a run interrupted mid-way and re-run on the same
cache ends with the uninterrupted result and never sends a request twice; (d) no test input ever
reaches a model; (e) the returned prompt renders for a test example.

The model is the deterministic scripted backend (not a language model): its replies are instruction
-like sentences that vary with the request and come wrapped in whatever tag the request mentions
(<INS>, <START>/<END>, <prompt>), so every method finds candidates to score.
"""

from __future__ import annotations

import hashlib

import pytest

from promptgym.data.dataset import Example
from promptgym.models.base import GenerationRequest
from promptgym.models.scripted import request_text
from promptgym.optimizers import REGISTRY
from promptgym.optimizers.base import Context
from promptgym.tasks.prompt import Prompt
from support import RecordingBackend

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


@pytest.fixture
def build(scripted_context):
    """``build(budget, backend, cache_name, seed)`` -> Context with 8 train, 4 dev, 6 held-out."""

    def make(budget: int | None, backend: RecordingBackend, cache_name: str = "cache.sqlite",
             seed: int = 0) -> Context:
        ctx = scripted_context(budget=budget, seed=seed, backend=backend, train=8, dev=4,
                               cache_name=cache_name)
        test = heldout_examples()
        ctx.forbidden_ids = frozenset(e.id for e in test)
        ctx.test_examples = test  # type: ignore[attr-defined]
        return ctx

    return make


def run_method(name: str, ctx: Context) -> Prompt:
    if name in SKIP:
        pytest.skip(SKIP[name])
    return REGISTRY[name]().run(ctx)


METHODS = sorted(REGISTRY)


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
