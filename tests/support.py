"""Test helpers importable from any test module (``from support import make_examples``)."""

from __future__ import annotations

from promptgym.data.dataset import Dataset, Example
from promptgym.evaluation.cache import request_key
from promptgym.models.base import EmbeddingRequest
from promptgym.models.scripted import ScriptedBackend, request_text
from promptgym.optimizers.base import Recorder

LABELS = ("positive", "negative", "neutral", "ambivalent")
TINY_LABELS = ("positive", "negative")
_TINY_REVIEWS = [
    ("The staff were friendly and the room was spotless.", "positive"),
    ("Cold food, rude waiter, never again.", "negative"),
    ("A lovely quiet place with a great view.", "positive"),
    ("The bed was broken and nobody helped us.", "negative"),
    ("Best breakfast we had on the whole trip.", "positive"),
    ("Dirty bathroom and a smell of smoke everywhere.", "negative"),
    ("The doctor listened carefully and explained everything.", "positive"),
    ("We waited three hours and the nurse shouted at us.", "negative"),
    ("Great value, helpful people, we will come back.", "positive"),
    ("Overpriced and noisy, the worst hotel in town.", "negative"),
    ("Delicious pasta and a very kind owner.", "positive"),
    ("The lesson was boring and the teacher was late.", "negative"),
]


def tiny_sentiment() -> Dataset:
    """Twelve short, plainly polar reviews, for runs on a real model."""
    return Dataset("tiny-sentiment", [Example(f"t{i}", text, (label,), TINY_LABELS)
                                      for i, (text, label) in enumerate(_TINY_REVIEWS)],
                   description="Is the opinion positive or negative?")


def make_examples(n: int, prefix: str = "ex") -> list[Example]:
    """Synthetic 4-way sentiment examples with distinct ids."""
    return [Example(id=f"{prefix}{i}", input=f"Review number {i}: the service was {LABELS[i % 4]} overall.",
                    targets=(LABELS[i % 4],), choices=LABELS) for i in range(n)]


class RecordingBackend(ScriptedBackend):
    """Scripted backend that logs every request it answers (key and text, embeddings included) into
    shared lists and can simulate a kill (KeyboardInterrupt) before answering call number
    ``interrupt_after + 1``."""

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


class Recording(Recorder):
    """Records candidates (id, instruction, parents, operation) and scores (id, split, example ids)."""

    def __init__(self):
        self.candidates: list[tuple[str, str, tuple[str, ...], str]] = []
        self.scored: list[tuple[str, str, tuple[str, ...]]] = []

    def candidate(self, prompt, parents, operation):
        self.candidates.append((prompt.id, prompt.instruction, tuple(parents), operation))

    def score(self, prompt, split, result):
        self.scored.append((prompt.id, split, tuple(e.id for e in result.examples)))


REVIEW_LABELS = ("positive", "negative", "neutral", "ambivalent")


def write_reviews(folder, n: int) -> str:
    """A JSONL file of ``n`` labelled hotel reviews (labels in turn) in ``folder``; its path."""
    import json

    path = folder / "reviews.jsonl"
    path.write_text("".join(json.dumps({"input": f"Review {i}: the stay was {REVIEW_LABELS[i % 4]}.",
                                        "target": REVIEW_LABELS[i % 4]}) + "\n" for i in range(n)))
    return str(path)
