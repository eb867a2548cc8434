"""Shared machinery for methods whose candidates an LLM writes: tag parsing, cleaning,
de-duplication and degenerate-candidate filtering (a tiny proposer writes many bad ones)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from promptgym.data.dataset import Example

_TAG_PAIRS = {"INS": ("<INS>", "</INS>"), "START": ("<START>", "<END>"), "prompt": ("<prompt>", "</prompt>")}


def extract_tagged(text: str, tag: str) -> list[str]:
    """Every span between the tag pair (e.g. ``INS`` -> <INS>...</INS>), case-insensitively.

    An opened but unclosed tag yields the rest of the text (small models forget to close)."""
    start, end = _TAG_PAIRS.get(tag, (f"<{tag}>", f"</{tag}>"))
    spans = re.findall(re.escape(start) + r"(.*?)" + re.escape(end), text, flags=re.S | re.I)
    if not spans:
        opened = re.search(re.escape(start) + r"(.*)", text, flags=re.S | re.I)
        if opened:
            spans = [opened.group(1)]
    return [s.strip() for s in spans if s.strip()]


def clean_instruction(text: str) -> str:
    """Trim an instruction the model wrote: no quotes, labels, list markers or trailing chatter."""
    text = text.strip().strip("`").strip()
    text = re.sub(r"^(?:new\s+)?(?:instruction|prompt)\s*\d*\s*[:\-]\s*", "", text, flags=re.I)
    text = re.sub(r"^\s*(?:\d+[.)]|[-*•])\s+", "", text)
    text = text.strip().strip('"“”\'').strip()
    return " ".join(text.split())


def normalize_key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.casefold()).strip()


@dataclass
class CandidateFilter:
    """Drops what is not worth paying to score, and counts why.

    Rules: empty or too short; far too long; mostly not words; a copy of a demonstration (contains
    a demonstration input, or input/output lines); a duplicate of something already kept or known.
    """

    min_words: int = 3
    max_words: int = 80
    demos: Sequence[Example] = ()
    dropped: Counter = field(default_factory=Counter)
    _seen: set[str] = field(default_factory=set)

    def remember(self, texts: Iterable[str]) -> None:
        """Known texts (e.g. the population so far) count as duplicates."""
        self._seen.update(normalize_key(t) for t in texts)

    def reason(self, text: str) -> str | None:
        words = text.split()
        if len(words) < self.min_words:
            return "too_short"
        if len(words) > self.max_words:
            return "too_long"
        letters = sum(ch.isalpha() for ch in text)
        if letters < 0.6 * len(text.replace(" ", "")):
            return "not_words"
        lowered = text.casefold()
        if re.search(r"(^|\n|\s)(input|output|answer)\s*:", lowered) and lowered.count(":") >= 2:
            return "copies_demos"
        for demo in self.demos:
            snippet = " ".join(demo.input.split())[:40].casefold()
            if len(snippet) >= 20 and snippet in " ".join(lowered.split()):
                return "copies_demos"
        if normalize_key(text) in self._seen:
            return "duplicate"
        return None

    def __call__(self, texts: Iterable[str]) -> list[str]:
        kept = []
        for text in texts:
            why = self.reason(text)
            if why:
                self.dropped[why] += 1
                continue
            self._seen.add(normalize_key(text))
            kept.append(text)
        return kept
