"""Tolerant answer extraction for generated text: small models wrap answers in chatter."""

from __future__ import annotations

import re
import string

# "Answer: X", "The final answer is: X", and also "The answer is X" (no colon, as small models
# often write); a bare "A" lead needs its colon ("A: X") so sentences starting "A ..." survive.
_LEADS = re.compile(
    r"^\s*(?:(?:the\s+)?(?:final\s+)?(?:answer|output|label|sentiment|result)\s*(?:is\s*[:\-]|is\s+|[:\-])"
    r"|a\s*[:\-])\s*",
    re.IGNORECASE)
_PUNCT = string.punctuation + "“”‘’«»"


def normalize(text: str) -> str:
    """Casefold, collapse white space, strip surrounding quotes and punctuation."""
    text = " ".join(text.split()).casefold()
    return text.strip(_PUNCT + " ")


def extract_answer(text: str) -> str:
    """The first non-empty line, without an 'Answer:'-style lead or surrounding punctuation."""
    for line in text.strip().splitlines():
        line = _LEADS.sub("", line.strip())
        line = line.strip().strip(_PUNCT + " ")
        if line:
            return line
    return ""


def match_option(text: str, options: list[str]) -> int | None:
    """Index of the option a free-text answer names, or None.

    An exact (normalised) match of the extracted answer wins; otherwise the option whose whole-word
    mention comes first in the text (ties broken by the longer option, so 'not positive' style
    overlaps pick the more specific label).
    """
    answer = normalize(extract_answer(text))
    normalized = [normalize(o) for o in options]
    if answer in normalized:
        return normalized.index(answer)
    body = normalize(text)
    best: tuple[int, int, int] | None = None
    for i, option in enumerate(normalized):
        if not option:
            continue
        found = re.search(r"(?<!\w)" + re.escape(option) + r"(?!\w)", body)
        if found:
            key = (found.start(), -len(option), i)
            best = key if best is None or key < best else best
    return None if best is None else best[2]


# "Answer:" as a reasoning reply's last line starts it; markdown around it ("**Answer:**") allowed.
_ANSWER_LINE = re.compile(r"(?<!\w)answer[\s*_]*:[\s*_]*", re.IGNORECASE)


def match_reasoned(text: str, options: list[str]) -> int | None:
    """Index of the option a reasoning reply ends with, or None.

    The reply reasons first and names options on the way, so its answer is read from the end: the
    text after its last "Answer:" matched as a direct answer is (``match_option``); without one, or
    when that text names no option, the option named last in the whole reply.
    """
    leads = list(_ANSWER_LINE.finditer(text))
    if leads:
        index = match_option(text[leads[-1].end():], options)
        if index is not None:
            return index
    return last_option(text, options)


def last_option(text: str, options: list[str]) -> int | None:
    """Index of the option whose last whole-word mention ends latest in ``text``, or None (ties
    broken by the longer option, so "not positive" wins over "positive")."""
    body = normalize(text)
    best: tuple[int, int, int] | None = None
    for i, option in enumerate(normalize(o) for o in options):
        if not option:
            continue
        ends = [m.end() for m in re.finditer(r"(?<!\w)" + re.escape(option) + r"(?!\w)", body)]
        if ends:
            key = (ends[-1], len(option), -i)
            best = key if best is None or key > best else best
    return None if best is None else -best[2]
