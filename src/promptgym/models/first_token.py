"""Option scores read from the first answer token's top log-probabilities.

A served chat model gives no log-probabilities of prompt text (no ``echo`` on
``/v1/chat/completions``), but OpenAI, vLLM and the llama.cpp servers return, for each token they
generate, its log-probability and those of the K most likely alternatives (``logprobs=true,
top_logprobs=K``). One request with ``max_tokens=1`` thus gives the distribution of the answer's
first token, and each option is scored by the alternative it would start with. On the embedded
SmolLM2 over ``llama_cpp.server`` these agree with the in-process scores on the predicted option
when K is large enough (the option words may sit far down the list: a chat model starts its
answers with "Positive", "This", ... before "positive").

The rule, for each option's continuation ``c`` (what the in-process backend scores):

- Spellings: ``c`` and its leading-space variant (a space added, or taken off when ``c`` has one),
  since a tokenizer may start the answer with either. Case is kept: "Positive" is not "positive",
  as in-process.
- First token: among the alternatives that a spelling starts with, the longest (the whole word
  "positive" rather than the piece "pos"). A piece shorter than the whole spelling must have
  ``MIN_PIECE`` characters or more besides a leading space: one- and two-letter tokens ("a", "n",
  "ne") start too many words to stand for an option (on SmolLM2, with the label words out of the
  list, "n" would have scored "negative" and "neutral"). The option's score is the log of the summed
  probabilities of its spellings' first tokens. A multi-token option is scored by
  its first token alone (an upper bound on the option's probability), so length normalisation
  changes nothing.
- Not in the top K: an option none of whose spellings starts with an alternative gets the floor,
  half the most its first token can have (the smaller of the lowest listed probability and the
  probability left outside the list), so it ranks below every option found. Options at the floor
  tie. Its token count is 0 (1 for an option found), so the verdict below can be read again from
  the scores alone, and an answer with no option found is no answer (``ChoiceTask.predict``), not
  the first option.
- Shared first token: options read from the same alternative (``ambivalent`` and ``ambiguous``,
  both starting with ``amb``) cannot be told apart by the first token; they get the same score and
  ``shared`` names them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

Alternative = tuple[str, float]  # (token text, log-probability)
SMALLEST_MASS = 1e-12  # probability left outside the list, at least (the listed mass may round to 1)
MIN_PIECE = 3  # characters a token that is only the start of an option must have


@dataclass(frozen=True)
class FirstTokenReading:
    """Each option's score (request order), the alternatives it was read from (empty: the floor),
    the floor, and the groups of options read from a common alternative."""

    logprobs: tuple[float, ...]
    tokens: tuple[tuple[str, ...], ...]
    floor: float
    shared: tuple[tuple[int, ...], ...]

    @property
    def found(self) -> int:
        """Options with an alternative in the list (the others are at the floor)."""
        return sum(1 for tokens in self.tokens if tokens)


def spellings(continuation: str) -> tuple[str, ...]:
    """``c`` and its leading-space variant, ``c`` first."""
    if continuation[:1].isspace():
        variant = continuation.lstrip()
    else:
        variant = " " + continuation
    return (continuation, variant) if variant and variant != continuation else (continuation,)


def read_options(alternatives: Sequence[Alternative], continuations: Sequence[str]) -> FirstTokenReading:
    """Score ``continuations`` from the first answer token's ``alternatives`` (the module's rule)."""
    mass = _merged(alternatives)
    if not mass:
        raise ValueError("no alternatives to read options from")
    left = 1.0 - sum(math.exp(value) for value in mass.values())
    floor = min(min(mass.values()), math.log(max(left, SMALLEST_MASS))) - math.log(2)
    logprobs, tokens = [], []
    for continuation in continuations:
        starts = tuple(dict.fromkeys(t for t in (_first_token(s, mass) for s in spellings(continuation)) if t))
        tokens.append(starts)
        logprobs.append(_logsumexp([mass[t] for t in starts]) if starts else floor)
    return FirstTokenReading(tuple(logprobs), tuple(tokens), floor, _shared(tokens))


def told_apart(logprobs: Sequence[float], token_counts: Sequence[int], continuations: Sequence[str]) -> str | None:
    """Why option scores read by this rule cannot rank the options (None: they can), from the
    scores alone, so that a cached answer gives the same verdict: no option found among the
    alternatives (token count 0), or options found with the same score (they start with one token)."""
    words = [c.strip() for c in continuations]
    found = [i for i, count in enumerate(token_counts) if count]
    if not found:
        return f"none of the options ({', '.join(words)}) is among the alternatives listed for the first answer token"
    ties: dict[float, list[int]] = {}
    for index in found:
        ties.setdefault(logprobs[index], []).append(index)
    group = next((indices for indices in ties.values() if len(indices) > 1), None)
    if group is None:
        return None
    return (f"options {' and '.join(repr(words[i]) for i in group)} begin with the same token "
            f"(first-token log-probability {logprobs[group[0]]:.2f}), which cannot tell them apart")


def _merged(alternatives: Sequence[Alternative]) -> dict[str, float]:
    """Token text -> log-probability, each text once (the first listed: a server lists the chosen
    token among the alternatives too), finite values only."""
    mass: dict[str, float] = {}
    for token, value in alternatives:
        if token not in mass and math.isfinite(value):
            mass[token] = float(value)
    return mass


def _first_token(spelling: str, mass: dict[str, float]) -> str | None:
    starts = [token for token in mass if token.strip() and spelling.startswith(token)
              and (token == spelling or len(token.strip()) >= MIN_PIECE)]
    return max(starts, key=len) if starts else None


def _shared(tokens: Sequence[tuple[str, ...]]) -> tuple[tuple[int, ...], ...]:
    owners: dict[str, list[int]] = {}
    for index, starts in enumerate(tokens):
        for token in starts:
            owners.setdefault(token, []).append(index)
    groups = {tuple(indices) for indices in owners.values() if len(indices) > 1}
    return tuple(sorted(groups))


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def chat_alternatives(response: Any) -> list[Alternative] | None:
    """The first generated token and its ``top_logprobs`` from a ``/chat/completions`` answer
    (``choices[0].logprobs.content[0]``); None when the answer has none."""
    choice = _first_choice(response)
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    first = content[0]
    listed = [(getattr(a, "token", None), getattr(a, "logprob", None))
              for a in (getattr(first, "top_logprobs", None) or [])]
    listed.append((getattr(first, "token", None), getattr(first, "logprob", None)))
    return _valid(listed) if len(listed) > 1 else None


def completion_alternatives(response: Any) -> list[Alternative] | None:
    """The same from a ``/completions`` answer asked with ``logprobs=K`` (no echo):
    ``choices[0].logprobs.top_logprobs[0]``, a token -> log-probability mapping."""
    logprobs = getattr(_first_choice(response), "logprobs", None)
    top = getattr(logprobs, "top_logprobs", None)
    if not top or not isinstance(top[0], dict) or not top[0]:
        return None
    listed = list(top[0].items())
    tokens, values = getattr(logprobs, "tokens", None), getattr(logprobs, "token_logprobs", None)
    if tokens and values:
        listed.append((tokens[0], values[0]))
    return _valid(listed)


def _first_choice(response: Any) -> Any:
    choices = getattr(response, "choices", None)
    return choices[0] if isinstance(choices, list) and choices else None


def _valid(listed: list[tuple[Any, Any]]) -> list[Alternative] | None:
    """Well-formed pairs only; None when none is left."""
    pairs = [(token, float(value)) for token, value in listed if isinstance(token, str)
             and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)]
    return pairs or None
