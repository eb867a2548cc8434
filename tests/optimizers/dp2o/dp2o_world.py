"""A scripted world where per-input prompt matching pays off (deterministic, not a language model).

Inputs are about one of four topics and name their label. The scripted task model reads the
label from the input only when the one-shot demonstration is about the same topic; otherwise it
leans towards the demonstration's label. So the best prompt differs per input (the one whose demo
shares the input's topic), a single prompt is right about 40% of the time, and a policy that
looks at the input's words can be right nearly always. The scripted optimizer model answers each
dialogue turn with one labelled example per label, about request-dependent topics.
"""

from __future__ import annotations

import hashlib
import re

import pytest

from promptgym.data.dataset import Example
from promptgym.evaluation.cache import ResponseCache
from promptgym.evaluation.evaluator import Budget, Evaluator
from promptgym.models.base import GenerationRequest
from promptgym.optimizers.base import Context
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import ChoiceTask
from support import RecordingBackend

LABELS = ("positive", "negative", "neutral", "ambivalent")
TOPICS = ("food", "staff", "room", "price")
ADJECTIVES = ("memorable", "unusual", "surprising", "typical", "notable")


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def world_examples(n: int, prefix: str) -> list[Example]:
    return [Example(f"{prefix}{i}", f"Note {prefix}{i}: the {TOPICS[i % 4]} was {LABELS[(i // 4 + i) % 4]} overall.",
                    (LABELS[(i // 4 + i) % 4],), LABELS) for i in range(n)]


def world_reply(request: GenerationRequest) -> str:
    h = _digest(repr(request))
    blocks = []
    for k, label in enumerate(LABELS):
        topic = TOPICS[(h // (k + 1)) % 4]
        adjective = ADJECTIVES[(h // 7 + k) % len(ADJECTIVES)]
        blocks.append(f" The {topic} felt {adjective} on visit {(h // 13 + k) % 1000}.\nAnswer: {label}")
    return "\n\nInput:".join(blocks)


def _topic(text: str) -> str | None:
    for topic in TOPICS:
        if re.search(rf"\b{topic}\b", text):
            return topic
    return None


def world_logprob(prompt: str, option: str) -> float:
    word = option.strip()
    noise = (_digest(f"{prompt}|{word}") % 1000) / 1000 * 0.2
    query = prompt.rsplit("Input:", 1)[-1]
    demo = re.search(r"Input:(.*?)\nAnswer: (\w+)", prompt, flags=re.S)
    if demo is None:
        return -2.0 + 5 * noise
    if _topic(demo.group(1)) == _topic(query):
        return (0.0 if re.search(rf"\b{word}\b", query) else -3.0) + noise
    return (-0.5 if word == demo.group(2) else -2.0) + noise


class WorldBackend(RecordingBackend):
    """The scripted world, logging request keys and texts (and able to simulate a kill); with
    ``embeddings=True`` it also embeds (hashed bags of words)."""

    def __init__(self, keys: list[str] | None = None, interrupt_after: int | None = None,
                 embeddings: bool = False):
        super().__init__(keys, None, interrupt_after, reply=world_reply, option_logprob=world_logprob,
                         name="dp2o-world", embeddings=embeddings)


@pytest.fixture
def world(tmp_path):
    """``world(budget=None, backend=None, cache='c.sqlite', train=12, dev=6, seed=0, recorder=None)``"""

    def build(budget: int | None = None, backend: WorldBackend | None = None, cache: str = "c.sqlite",
              train: int = 12, dev: int = 6, seed: int = 0, recorder=None) -> Context:
        backend = backend or WorldBackend()
        evaluator = Evaluator(backend, backend, ResponseCache(f"sqlite:///{tmp_path / cache}"), Budget(budget))
        test = world_examples(12, "test")
        kwargs = {"recorder": recorder} if recorder is not None else {}
        ctx = Context(task=ChoiceTask(), evaluator=evaluator, train=world_examples(train, "train"),
                      dev=world_examples(dev, "dev"), initial=Prompt("Classify the note."), seed=seed,
                      forbidden_ids=frozenset(e.id for e in test), **kwargs)
        ctx.test_examples = test  # type: ignore[attr-defined]
        return ctx

    return build


__all__ = ["LABELS", "WorldBackend", "world", "world_examples"]
