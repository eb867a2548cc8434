"""A deterministic scripted model for unit tests of optimizer logic. Not a language model:
never use it behind a quality or speed claim.

Generation answers from a user function (default: a canned reply picked by a hash of the request,
so different samples differ). Scoring gives each option a log-probability from a user function
of (prompt text, option) (default: options the prompt mentions more often score higher, with
a fixed per-option bias), which makes "better" instructions exist for optimizers to find.
Embeddings (only with ``embeddings=True``, so that methods choosing an encoder automatically keep
their model-free path on this model) are hashed bags of words: deterministic, and texts that share
words point the same way, so a method that learns from vectors has something to learn.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Callable, Sequence

from promptgym.errors import PromptgymError
from promptgym.models.base import (Completion, Embedding, EmbeddingRequest, GenerationRequest, OnResult,
                                   OptionScores, ScoreRequest)

DEFAULT_REPLIES = (
    "Classify the sentiment of the text as positive or negative.",
    "Decide whether the review is positive, negative, neutral or ambivalent.",
    "Read the text and answer with its label.",
    "Label the opinion expressed in the input.",
    "Say which sentiment the sentence expresses.",
)


EMBEDDING_DIM = 32
OPTIONS = re.compile(r"Answer with one of: (.+?)\.\n")  # the options line of a layout that shows them
REASONING_CUE = '"Answer: <option>"'  # in the cue of a prompt that reasons first (tasks.prompt.REASONING_LINE)


def _digest(*parts: object) -> int:
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:12], 16)


def request_text(request: GenerationRequest | ScoreRequest) -> str:
    if request.messages is not None:
        body = "\n".join(f"{role}: {content}" for role, content in request.messages)
    else:
        body = request.text or ""
    return body + request.answer_prefix


class ScriptedBackend:
    supports_scoring = True
    max_concurrency = 1
    context_limit: int | None = None  # no context by default; tests set one for the long-input check

    @staticmethod
    def count_tokens(text: str) -> int:
        return -(-len(text) // 3)

    def __init__(self, reply: Callable[[GenerationRequest], str] | None = None,
                 option_logprob: Callable[[str, str], float] | None = None, name: str = "scripted",
                 embeddings: bool = False):
        self.reply = reply or self._default_reply
        self.option_logprob = option_logprob or self._default_logprob
        self.identity = f"scripted:{name}"
        self.supports_embedding = embeddings
        self.calls = 0

    @classmethod
    def _default_reply(cls, request: GenerationRequest) -> str:
        """A canned reply; a short answer to a prompt that lists its options ("Answer with one of:
        a, b.", a choice task scored by generation) is the option scoring would rank first, and a
        prompt that asks for reasoning first gets a line that names every option, then that one
        on a last line "Answer: ..."."""
        prompt = request_text(request)
        listed = OPTIONS.search(prompt)
        reasons = listed is not None and REASONING_CUE in prompt
        if listed and (request.max_tokens <= 32 or reasons):
            options = [o.strip() for o in listed.group(1).split(", ") if o.strip()]
            best = max(options, key=lambda o: cls._default_logprob(prompt, o))
            if reasons:
                return f"It could be {' or '.join(options)}; weighing the input, it is {best}.\nAnswer: {best}"
            return best
        return DEFAULT_REPLIES[_digest(request) % len(DEFAULT_REPLIES)]

    @staticmethod
    def _default_logprob(prompt: str, option: str) -> float:
        word = option.strip().lower()
        mentions = prompt.lower().count(word)
        return -2.0 - 0.1 * (_digest(word) % 7) + 0.5 * mentions

    def generate(self, requests: Sequence[GenerationRequest], on_result: OnResult) -> None:
        for i, request in enumerate(requests):
            self.calls += 1
            text = self.reply(request)
            on_result(i, Completion(text, prompt_tokens=len(request_text(request).split()),
                                    completion_tokens=len(text.split())))

    def score(self, requests: Sequence[ScoreRequest], on_result: OnResult) -> None:
        for i, request in enumerate(requests):
            self.calls += 1
            prompt = request_text(request)
            logprobs = tuple(self.option_logprob(prompt, c) for c in request.continuations)
            on_result(i, OptionScores(logprobs, tuple(1 for _ in logprobs),
                                      prompt_tokens=len(prompt.split())))

    @staticmethod
    def vector(text: str) -> tuple[float, ...]:
        """Each word adds +-1 to one of ``EMBEDDING_DIM`` buckets (by its hash); L2-normalised."""
        out = [0.0] * EMBEDDING_DIM
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            h = _digest(word)
            out[h % EMBEDDING_DIM] += 1.0 if (h >> 8) % 2 else -1.0
        norm = math.sqrt(sum(x * x for x in out)) or 1.0
        return tuple(x / norm for x in out)

    def embed(self, requests: Sequence[EmbeddingRequest], on_result: OnResult) -> None:
        if not self.supports_embedding:
            raise PromptgymError(f"{self.identity}: embeddings are off (ScriptedBackend(embeddings=True))")
        for i, request in enumerate(requests):
            self.calls += 1
            on_result(i, Embedding(self.vector(request.text), prompt_tokens=len(request.text.split())))

    def close(self) -> None:
        pass
