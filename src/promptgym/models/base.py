"""Request and response records, and the small interface every backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, TypeVar

R = TypeVar("R")
OnResult = Callable[[int, object], None]

Message = tuple[str, str]  # (role, content)


@dataclass(frozen=True)
class GenerationRequest:
    """Generate text after chat ``messages`` (rendered by the backend's template) or raw ``text``.

    ``sample`` is a rollout index: two requests that differ only in it are different samples at
    temperature > 0, and each is cached on its own (the seed derives from the whole request).
    """

    messages: tuple[Message, ...] | None = None
    text: str | None = None
    answer_prefix: str = ""
    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    sample: int = 0


@dataclass(frozen=True)
class ScoreRequest:
    """Log-probability of each continuation after the prompt; one model call per request."""

    continuations: tuple[str, ...]
    messages: tuple[Message, ...] | None = None
    text: str | None = None
    answer_prefix: str = ""


@dataclass(frozen=True)
class EmbeddingRequest:
    """One text to embed (a frozen vector of the whole text, e.g. a policy's state)."""

    text: str


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class OptionScores:
    """Summed log-probability and token count of each continuation, in request order. A count of 0:
    no token of the option was read (a served model's first answer token did not list it), its
    log-probability is a floor; when no option has a token read, the answer names none."""

    logprobs: tuple[float, ...]
    token_counts: tuple[int, ...]
    prompt_tokens: int = 0


@dataclass(frozen=True)
class Embedding:
    """A text's vector; ``prompt_tokens`` is what the backend counted for it (0 when unknown)."""

    vector: tuple[float, ...]
    prompt_tokens: int = 0


class Backend(Protocol):
    """A language model. ``identity`` names the exact model so cached answers are not mixed up
    (an embedding is keyed by it too: a backend that changes how it embeds changes its identity)."""

    identity: str
    supports_scoring: bool
    supports_embedding: bool
    max_concurrency: int

    def generate(self, requests: Sequence[GenerationRequest], on_result: OnResult) -> None:
        """Answer the requests (concurrently where the backend can).

        ``on_result(index, Completion)`` is called as each one finishes, so the caller can persist
        it at once; an exception stops the batch (results already reported stay reported).
        """

    def score(self, requests: Sequence[ScoreRequest], on_result: OnResult) -> None:
        """Score the continuations of each request; ``on_result(index, OptionScores)``."""

    def embed(self, requests: Sequence[EmbeddingRequest], on_result: OnResult) -> None:
        """Embed each text; ``on_result(index, Embedding)``."""

    def close(self) -> None:
        """Release the model or connection."""
