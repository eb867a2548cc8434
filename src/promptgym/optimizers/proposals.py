"""Shared machinery for methods whose candidates an LLM writes: tag parsing, cleaning,
de-duplication and degenerate-candidate filtering (a tiny proposer writes many bad ones)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Sequence

from promptgym.data.dataset import Example
from promptgym.optimizers.metaprompt import MetaPrompt
from promptgym.tasks.prompt import render_template

if TYPE_CHECKING:  # pragma: no cover
    from promptgym.optimizers.base import Context
    from promptgym.tasks.prompt import Prompt

_TAG_PAIRS = {"INS": ("<INS>", "</INS>"), "START": ("<START>", "<END>"), "prompt": ("<prompt>", "</prompt>")}


def render_meta_prompt(template: str, **values: object) -> str:
    """Fill a bare Jinja template with values (values are never interpreted, so braces in prompts
    or data written by a model are safe). A method's own meta-prompts are ``MetaPrompt`` objects,
    which also check their variables and carry their answer's parser."""
    return render_template(template, "meta-prompt", **values)


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
    a demonstration input, or input/output lines); an echo of the meta-prompt (shares a run of
    ``echo_words`` words with a text in ``meta_texts``: tiny proposers often parrot the request);
    a duplicate of something already kept or known.
    """

    min_words: int = 3
    max_words: int = 80
    demos: Sequence[Example] = ()
    meta_texts: Sequence[str] = ()
    echo_words: int = 5
    dropped: Counter = field(default_factory=Counter)
    _seen: set[str] = field(default_factory=set)

    def _echoes(self, text: str) -> bool:
        words = normalize_key(text).split()
        n = self.echo_words
        if len(words) < n or not self.meta_texts:
            return False
        haystack = [" " + normalize_key(m) + " " for m in self.meta_texts]
        grams = (" " + " ".join(words[i:i + n]) + " " for i in range(len(words) - n + 1))
        return any(g in h for g in grams for h in haystack)

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
        if self._echoes(text):
            return "echoes_meta_prompt"
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


# ---------------------------------------------------------------------------------------------
# Paraphrasing and reading candidates out of replies (shared by APE, OPRO, EvoPrompt, ProTeGi, GPO).

def _first_line_instruction(reply: str) -> str:
    return clean_instruction(reply.strip().split("\n")[0])


PARAPHRASE = MetaPrompt(
    "paraphrase",
    "Rewrite the following instruction in different words. Keep its meaning; reply with the new "
    "instruction only.\n\nInstruction: {{ instruction }}",
    parser=_first_line_instruction, cue="New instruction:")


def paraphrase(ctx: "Context", prompt: "Prompt | str", n: int, *, temperature: float = 0.9,
               top_p: float = 0.9, max_tokens: int = 50) -> list[str]:
    """``n`` rewordings of an instruction that keep its meaning (APE's resampling step; EvoPrompt's
    initial population; ProTeGi's Monte-Carlo successors): one optimizer-model request of ``n``
    samples. Texts come back cleaned, first line only (small models ramble after it), and
    unfiltered: pass them through a ``CandidateFilter``."""
    if n <= 0:
        return []
    instruction = prompt if isinstance(prompt, str) else prompt.instruction
    outs = ctx.ask([("user", PARAPHRASE.render(instruction=instruction))], n=n,
                   temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                   answer_prefix=PARAPHRASE.cue)
    texts = [PARAPHRASE.parse(o) for o in outs]
    return [t for t in texts if t]


def parse_first(text: str, tag: str, prefix: str = "", which: str = "first") -> str:
    """The one candidate in a reply (OPRO and EvoPrompt read one per sample), tolerant of small models.

    ``prefix`` is the answer cue the request ended with (e.g. ``<INS>``): it is put back in front
    so that a reply continuing it still counts as tagged. Then: a closed tagged span (the first or,
    with ``which="last"``, the last: EvoPrompt's final step comes last); else the first non-empty
    line after an opened but unclosed tag; else the first non-empty line of the reply (small models
    go on with more numbered steps or copies of the format on the next lines). Stray tag markers
    left inside (a model echoing the format) are removed. Returns "" when nothing usable is there.
    """
    start, end = _TAG_PAIRS.get(tag, (f"<{tag}>", f"</{tag}>"))
    text = prefix + text
    closed = re.findall(re.escape(start) + r"(.*?)" + re.escape(end), text, flags=re.S | re.I)
    closed = [s for s in closed if _strip_markers(s, start, end).strip()]
    if closed:
        body = closed[-1] if which == "last" else closed[0]
    else:
        opened = list(re.finditer(re.escape(start), text, flags=re.I))
        if opened:
            at = opened[-1] if which == "last" else opened[0]
            body = _first_line(_strip_markers(text[at.end():], start, end))
        else:
            body = _first_line(_strip_markers(text, start, end))
    return clean_instruction(_strip_markers(body, start, end))


def _first_line(text: str) -> str:
    return next((line for line in text.split("\n") if line.strip()), "")


def _strip_markers(text: str, start: str, end: str) -> str:
    return re.sub("[ \t]*(?:" + "|".join(re.escape(m) for m in (start, end)) + ")[ \t]*", " ", text, flags=re.I)


def parse_all(text: str, tag: str, prefix: str = "", max_items: int | None = 8) -> list[str]:
    """Every candidate in a reply asked for several at once (ProTeGi asks for N reasons or N
    prompts per reply), with ``parse_first``'s tolerance: ``prefix`` (the answer cue) is put back
    in front; closed tagged spans in order; if there are none, ``parse_first``'s single fallback
    (an unclosed tag up to the first blank line, else the first paragraph). Cleaned, empties
    dropped, at most ``max_items`` (``None``: all)."""
    start, end = _TAG_PAIRS.get(tag, (f"<{tag}>", f"</{tag}>"))
    full = prefix + text
    closed = re.findall(re.escape(start) + r"(.*?)" + re.escape(end), full, flags=re.S | re.I)
    items = [clean_instruction(_strip_markers(s, start, end)) for s in closed]
    items = [s for s in items if s]
    if not items:
        one = parse_first(text, tag, prefix=prefix)
        items = [one] if one else []
    return items[:max_items]
