"""Test helpers importable from any test module (``from support import make_examples``)."""

from __future__ import annotations

from promptgym.data.dataset import Example
from promptgym.evaluation.cache import request_key
from promptgym.models.base import EmbeddingRequest
from promptgym.models.scripted import ScriptedBackend, request_text

LABELS = ("positive", "negative", "neutral", "ambivalent")


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
