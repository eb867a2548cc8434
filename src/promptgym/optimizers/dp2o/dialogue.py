"""Stage A's dialogue: the optimizer model writes new labelled demonstrations, turn after turn,
in one conversation per round (earlier turns and replies are carried as chat messages).

Each turn shows a window of ``window`` consecutive seed demonstrations (the paper's m - 2 turns
for m seeds is a window of 3 sliding over them) and then asks, one exchange per label, for one new
example whose answer is that label. Decision (measured on SmolLM2-135M): asked for several
labelled examples in one reply, the tiny model wrote numbered stubs ("1. 2. 3. 4.") or labels
outside the label set on every turn of a 3-round run (0 usable items of 18 turns), so the label is
fixed by the request and the model writes only the input text; the exchange is recorded in the
history as "Input: ... / Answer: <label>", so later turns see complete labelled examples. This also
gives the label balance the paper asks for by construction. Later windows ask for examples that fit
everything shown so far. The first round walks the seeds in SUE order, later rounds in a seeded
shuffled order, so rounds differ.

Small models write messy replies, often whole labelled blocks although only the input text was
asked for; ``parse_items`` reads key/value blocks with many key spellings, same-line pairs, markdown,
numbering, and a few key-less fallbacks ("text (label)", "label: text"), so that the text is found
without the label the model added to it. The label an item gets is always the one the exchange asked
for; what the model wrote as a label is not read.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

from promptgym.data.dataset import Example
from promptgym.optimizers.metaprompt import MetaPrompt
from promptgym.optimizers.proposals import CandidateFilter

SYSTEM = ("You write new labelled examples for a text classification task. You copy the format of "
          "the examples you are shown exactly, one example per block, and you never repeat an example.")
REPLY_CUE = "Input:"

_INPUT_KEYS = r"(?:input|text|review|sentence|example|opinion|statement|comment|tweet|passage|question)"
_LABEL_KEYS = r"(?:answer|label|sentiment|output|class|category|emotion|polarity|prediction)"
_KEY_INPUT = re.compile(rf"^\s*(?:new\s+)?{_INPUT_KEYS}\s*\d*\s*[:：]\s*(.*)$", re.I)
_KEY_LABEL = re.compile(rf"^\s*{_LABEL_KEYS}\s*[:：]\s*(.*)$", re.I)
_INLINE_LABEL = re.compile(rf"\s(?:{_LABEL_KEYS})\s*[:：]\s*(\S.*)$", re.I)
_MARKERS = re.compile(r"^\s*(?:#?\d+\s*[.)]\s+|[-*•>]+\s*)")


def _clean_line(line: str) -> str:
    line = line.replace("**", "").replace("__", "").replace("`", "")
    return line.strip()


def _strip_quotes(text: str) -> str:
    text = " ".join(text.split()).strip()
    for _ in range(2):
        text = text.strip().strip('"“”‘’\'').strip()
    return text


def parse_items(text: str) -> list[tuple[str, str | None]]:
    """(input text, written label or None) pairs found in a reply, in order: key/value blocks
    ("Input: ... / Answer: ...", many key spellings, same-line pairs), or without any keyed block,
    key-less fallbacks."""
    items: list[tuple[str, str | None]] = []
    current: list[str] | None = None

    def close(label: str | None) -> None:
        nonlocal current
        if current is not None:
            items.append((_strip_quotes(" ".join(current)), label))
        current = None

    for raw in text.splitlines():
        line = _MARKERS.sub("", _clean_line(raw), count=1)
        if not line:
            continue
        key_in = _KEY_INPUT.match(line)
        key_label = _KEY_LABEL.match(line)
        if key_in:
            close(None)
            body = key_in.group(1)
            inline = _INLINE_LABEL.search(body)
            if inline:  # "Input: text  Answer: label" on one line
                items.append((_strip_quotes(body[:inline.start()]), inline.group(1).strip()))
            else:
                current = [body]
        elif key_label:
            close(key_label.group(1).strip())
        elif current is not None:
            current.append(line)
    close(None)
    items = [(t, lab) for t, lab in items if t]
    return items or _fallback_items(text)


_PAREN_LABEL = re.compile(r"^(.*\S)\s*[\(\[]\s*([A-Za-z][\w ]{0,30})\s*[\)\]]\s*\.?$")
_DASH_LABEL = re.compile(r"^(.*\S)\s+(?:-|–|—|=>|->)\s+([A-Za-z][\w ]{0,30})\.?$")
_LABEL_FIRST = re.compile(r"^([A-Za-z][\w ]{0,30})\s*[:：]\s*(.+)$")


def _fallback_items(text: str) -> list[tuple[str, str | None]]:
    """Key-less lines: 'text (label)', 'text - label', 'label: text'."""
    items: list[tuple[str, str | None]] = []
    for raw in text.splitlines():
        line = _MARKERS.sub("", _clean_line(raw), count=1)
        if not line:
            continue
        for pattern, text_group, label_group in ((_PAREN_LABEL, 1, 2), (_DASH_LABEL, 1, 2),
                                                 (_LABEL_FIRST, 2, 1)):
            match = pattern.match(line)
            if match:
                items.append((_strip_quotes(match.group(text_group)), match.group(label_group).strip()))
                break
    return [(t, lab) for t, lab in items if t]


def format_demos(examples: Sequence[tuple[str, str]]) -> str:
    return "\n\n".join(f"Input: {text}\nAnswer: {word}" for text, word in examples)


@dataclass
class Item:
    """One generated demonstration with its provenance."""

    input: str
    label: str
    round: int
    turn: int
    seeds: tuple[int, ...]  # indices into the seed list shown on that turn


@dataclass
class DialogueResult:
    items: list[Item] = field(default_factory=list)
    turns: int = 0
    parsed: int = 0
    dropped: Counter = field(default_factory=Counter)
    empty_replies: int = 0
    retries: int = 0
    rounds: int = 0  # conversations held, the extra ones included


def trim_history(messages: list[tuple[str, str]], max_chars: int) -> list[tuple[str, str]]:
    """Keep the system message and the first exchange (task, format), then as many of the latest
    messages as fit in ``max_chars``; always keep the newest user turn."""
    size = lambda ms: sum(len(c) for _, c in ms)  # noqa: E731
    if size(messages) <= max_chars or len(messages) <= 4:
        return messages
    head, tail = messages[:3], messages[3:]
    kept: list[tuple[str, str]] = [tail[-1]]
    budget = max_chars - size(head) - len(tail[-1][1])
    i = len(tail) - 2
    while i >= 1:  # whole exchanges (assistant + user pairs), newest first
        pair = tail[i - 1:i + 1]
        if size(pair) > budget:
            break
        kept = pair + kept
        budget -= size(pair)
        i -= 2
    return head + kept


def _reply_text(reply: str) -> str:
    """The input text the model wrote after the "Input:" cue: the first keyed item if it wrote
    whole blocks anyway, else the first line, without a trailing "Answer: ..." part."""
    parsed = parse_items(REPLY_CUE + reply)
    text = parsed[0][0] if parsed else reply.strip().split("\n")[0]
    return _strip_quotes(_INLINE_LABEL.split(" " + text)[0]) if text else ""


# The user turns of the dialogue. Every reply continues the "Input:" cue and ends at the line's end.
FIRST_TURN = MetaPrompt(
    "dp2o.first-turn",
    "Task: {{ instruction }}\nPossible answers: {{ labels }}.\n\n"
    "Some examples of the task:\n\n{{ demos }}\n\n"
    "Write one new example of this task whose answer is {{ word }}. Match the examples above in topic, "
    "length and style, but do not copy them. Write only the input text.",
    parser=_reply_text, cue=REPLY_CUE, stop=("\n",))
NEXT_LABEL = MetaPrompt(
    "dp2o.next-label",
    "Now write one more new example, different from the ones so far, whose answer is {{ word }}.",
    parser=_reply_text, cue=REPLY_CUE, stop=("\n",))
NEXT_TURN = MetaPrompt(
    "dp2o.next-turn",
    "More examples of the task:\n\n{{ demos }}\n\n"
    "Write one new example that fits all the examples so far, whose answer is {{ word }}. "
    "Write only the input text.",
    parser=_reply_text, cue=REPLY_CUE, stop=("\n",))


def run_dialogue(ctx, seeds: Sequence[Example], instruction: str, labels: Sequence[str],
                 label_word: dict[str, str], *, rounds: int, window: int = 3, temperature: float = 0.8,
                 top_p: float = 0.95, max_tokens: int = 256, max_history_chars: int = 4000,
                 known_inputs: Sequence[Example] = (), min_words: int = 3,
                 max_words: int = 80, retries: int = 2, retry_heat: float = 0.3,
                 one_more: Callable[[DialogueResult], bool] | None = None) -> DialogueResult:
    """Hold ``rounds`` conversations with the optimizer model; return the kept, de-duplicated
    labelled items and what was dropped (by reason).

    An exchange whose reply is dropped (empty, degenerate, a copy or a duplicate) is asked again
    up to ``retries`` times, each a fresh sample ``retry_heat`` hotter. Decision (measured on
    SmolLM2-135M): at temperature 0.8 the model repeated its own earlier reply or a seed in 68 of
    72 exchanges, leaving a pool of 4; the history it copies from is what the paper asks for, so
    the remedy is resampling, not a shorter history. Only the kept (or last) reply enters the
    history; every attempt is a model call and counts as a turn.

    When the ``rounds`` conversations leave no usable item, ``one_more`` (given the result so far)
    says whether to hold another: the caller's budget for screening and the policy would otherwise
    go unspent (measured: SmolLM2 on liar, one planned round, 6 turns, every reply too short or a
    copy; the run stopped after 44 of 300 calls)."""
    result = DialogueResult()
    label_list = ", ".join(label_word[lab] for lab in labels)
    filt = CandidateFilter(min_words=min_words, max_words=max_words, demos=list(known_inputs))
    filt.remember([e.input for e in known_inputs])
    n = len(seeds)
    width = max(1, min(window, n))
    n_turns = max(1, n - width + 1)
    rnd = 0
    while rnd < rounds or (not result.items and one_more is not None and one_more(result)):
        order = list(range(n)) if rnd == 0 else [int(i) for i in ctx.rng.permutation(n)]
        messages: list[tuple[str, str]] = [("system", SYSTEM)]
        for turn in range(n_turns):
            shown = order[turn:turn + width]
            demos = format_demos([(seeds[i].input, label_word[seeds[i].target]) for i in shown])
            start = (rnd + turn) % len(labels)  # rotate which label opens the turn
            for k, label in enumerate(labels[start:] + labels[:start]):
                word = label_word[label]
                if k > 0:
                    meta, user = NEXT_LABEL, NEXT_LABEL.render(word=word)
                elif turn == 0:
                    meta = FIRST_TURN
                    user = meta.render(instruction=instruction.strip(), labels=label_list, demos=demos, word=word)
                else:
                    meta, user = NEXT_TURN, NEXT_TURN.render(demos=demos, word=word)
                messages.append(("user", user))
                messages = trim_history(messages, max_history_chars)
                kept = None
                for attempt in range(retries + 1):
                    reply = ctx.ask(messages, n=1, temperature=temperature + attempt * retry_heat,
                                    top_p=top_p, max_tokens=max_tokens, answer_prefix=meta.cue,
                                    stop=meta.stop)[0]
                    result.turns += 1
                    text = meta.parse(reply)
                    if not text:
                        result.empty_replies += 1
                        continue
                    result.parsed += 1
                    if filt([text]):
                        kept = text
                        break
                result.retries += attempt
                messages.append(("assistant", f"{meta.cue} {kept or text}\nAnswer: {word}"))
                if kept is None:
                    continue
                text = kept
                result.items.append(Item(text, label, rnd, turn, tuple(shown)))
        rnd += 1
        result.rounds = rnd
    for reason, count_ in filt.dropped.items():
        result.dropped[reason] += count_
    return result
