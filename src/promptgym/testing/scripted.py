"""The scripted world the conformance suite runs a method in: a deterministic stand-in model (not a
language model) that records every request, small synthetic data, and a ``Context`` on them.

The model's replies are instruction-like sentences chosen by a hash of the request and wrapped in
whatever tag the request mentions (<INS>, <START>/<END>, <prompt>), so that every method finds
candidates to parse and score; option scores favour the options an instruction names, so better
instructions exist. Use it for tests of a method's logic only, never behind a quality claim.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from promptgym.data.dataset import Example
from promptgym.evaluation.cache import ResponseCache, request_key
from promptgym.evaluation.evaluator import Budget, Evaluator
from promptgym.models.base import EmbeddingRequest, GenerationRequest
from promptgym.models.scripted import ScriptedBackend, request_text
from promptgym.optimizers.base import Context
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import ChoiceTask

LABELS = ("positive", "negative", "neutral", "ambivalent")

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


class RecordingBackend(ScriptedBackend):
    """A scripted backend that logs every request it answers (its cache key and its text,
    embeddings included) into shared lists, and can simulate a kill (``KeyboardInterrupt``) before
    answering call number ``interrupt_after + 1``."""

    def __init__(self, keys: list[str] | None = None, texts: list[str] | None = None,
                 interrupt_after: int | None = None, **scripted):
        super().__init__(**scripted)
        self.keys = [] if keys is None else keys
        self.texts = [] if texts is None else texts
        self.interrupt_after = interrupt_after

    def _log(self, request) -> None:
        if self.interrupt_after is not None and len(self.keys) >= self.interrupt_after:
            raise KeyboardInterrupt("simulated kill")
        self.keys.append(request_key(self.identity, request))
        self.texts.append(request.text if isinstance(request, EmbeddingRequest) else request_text(request))

    def generate(self, requests, on_result):
        for i, request in enumerate(requests):
            self._log(request)
            super().generate([request], lambda _, resp, i=i: on_result(i, resp))

    def score(self, requests, on_result):
        for i, request in enumerate(requests):
            self._log(request)
            super().score([request], lambda _, resp, i=i: on_result(i, resp))

    def embed(self, requests, on_result):
        for i, request in enumerate(requests):
            self._log(request)
            super().embed([request], lambda _, resp, i=i: on_result(i, resp))


class ConformanceBackend(RecordingBackend):
    """The recording backend with the suite's tagged replies and option scores."""

    def __init__(self, keys: list[str] | None = None, texts: list[str] | None = None,
                 interrupt_after: int | None = None, name: str = "scripted"):
        super().__init__(keys, texts, interrupt_after, reply=scripted_reply, option_logprob=scripted_logprob,
                         name=name)


def make_examples(n: int, prefix: str = "ex") -> list[Example]:
    """Synthetic 4-way sentiment examples with distinct ids."""
    return [Example(id=f"{prefix}{i}", input=f"Review number {i}: the service was {LABELS[i % 4]} overall.",
                    targets=(LABELS[i % 4],), choices=LABELS) for i in range(n)]


def heldout_examples(n: int = 6) -> list[Example]:
    """Test examples whose inputs appear nowhere else, so a leak is visible in the request log."""
    return [Example(id=f"test{i}", input=f"HELDOUT-{i:03d} zebra quartz story, {LABELS[i % 4]} mood.",
                    targets=(LABELS[i % 4],), choices=LABELS) for i in range(n)]


def make_context(budget: int | None, backend: ScriptedBackend, cache_path: str | Path, seed: int = 0,
                 optimizer_backend: ScriptedBackend | None = None) -> Context:
    """A Context with 8 train, 4 dev and 6 held-out examples (``ctx.test_examples``, forbidden to
    the method) on ``backend`` (also the optimizer model unless ``optimizer_backend`` is given),
    with a fresh response cache at ``cache_path`` and a hard budget of ``budget`` calls (None:
    unlimited)."""
    evaluator = Evaluator(backend, optimizer_backend or backend, ResponseCache(f"sqlite:///{cache_path}"),
                          Budget(budget))
    test = heldout_examples()
    ctx = Context(task=ChoiceTask(), evaluator=evaluator, train=make_examples(8, "train"),
                  dev=make_examples(4, "dev"), initial=Prompt("Classify the review."), seed=seed,
                  forbidden_ids=frozenset(e.id for e in test))
    ctx.test_examples = test  # type: ignore[attr-defined]
    return ctx
