"""Parsing what a small model writes when asked for labelled examples, and the dialogue loop."""

from __future__ import annotations

import pytest

from promptgym.data.dataset import Example
from promptgym.optimizers.dp2o.dialogue import parse_items, run_dialogue, trim_history

WORDS = {w: w for w in ("positive", "negative", "neutral", "ambivalent")}


def test_clean_blocks():
    text = ("Input: The soup was cold and bland.\nAnswer: negative\n\n"
            "Input: Staff were friendly and fast.\nAnswer: positive")
    assert parse_items(text) == [("The soup was cold and bland.", "negative"),
                                 ("Staff were friendly and fast.", "positive")]


def test_messy_blocks():
    text = """Sure! Here are some new examples:

1. **Input:** "The hotel was fine, nothing special."
   **Answer:** Neutral.

2) Review: I loved the view
but the bed was awful.
Sentiment: ambivalent (mixed feelings)

- Text 3: Great coffee!  Label: POSITIVE
Input: This one has no answer because the reply was cut"""
    items = parse_items(text)
    assert items == [
        ("The hotel was fine, nothing special.", "Neutral."),
        ("I loved the view but the bed was awful.", "ambivalent (mixed feelings)"),
        ("Great coffee!", "POSITIVE"),
        ("This one has no answer because the reply was cut", None),
    ]


def test_keyless_fallbacks():
    text = "1. The room smelled of smoke (negative)\n2. Breakfast was okay - neutral\npositive: What a lovely stay"
    assert parse_items(text) == [("The room smelled of smoke", "negative"), ("Breakfast was okay", "neutral"),
                                 ("What a lovely stay", "positive")]


def test_garbage_gives_nothing():
    assert parse_items("") == []
    assert parse_items("I cannot help with that.\n\n!!!") == []


def test_trim_history_keeps_head_and_newest():
    msgs = [("system", "s" * 10), ("user", "u1" * 50), ("assistant", "a1" * 50)]
    for i in range(2, 8):
        msgs += [("user", f"u{i}" * 50), ("assistant", f"a{i}" * 50)]
    msgs.append(("user", "last" * 10))
    trimmed = trim_history(msgs, max_chars=600)
    assert trimmed[:3] == msgs[:3] and trimmed[-1] == msgs[-1]
    assert sum(len(c) for _, c in trimmed) <= 600
    middle = ["user", "assistant"] * ((len(trimmed) - 4) // 2)
    assert [r for r, _ in trimmed] == ["system", "user", "assistant"] + middle + ["user"]
    assert trim_history(msgs[:5], 10_000) == msgs[:5]


class _Ctx:
    """Just enough Context for the dialogue: records the conversations it is asked."""

    def __init__(self, replies):
        import numpy as np

        self.rng = np.random.default_rng(0)
        self.replies = iter(replies)
        self.asked = []

    def ask(self, messages, **kwargs):
        self.asked.append(list(messages))
        return [next(self.replies)]


def test_dialogue_carries_history_filters_and_counts():
    seeds = [Example(f"s{i}", f"Seed text number {i} about the hotel stay.", (lab,), tuple(WORDS))
             for i, lab in enumerate(["positive", "negative", "neutral", "ambivalent"])]
    # One exchange per label and window: 4 seeds, window 3 -> 2 windows x 4 labels = 8 exchanges.
    replies = [
        " A clean room and kind staff.",                                  # window 0, positive
        " Dirty sheets everywhere.\nAnswer: negative",                    # keeps the first line only
        " ok",                                                           # too short
        "",                                                              # empty reply
        " A clean room and kind staff.",                                  # window 1: duplicate
        " Seed text number 1 about the hotel stay.",                      # copies a known input
        " The pool was nice but cold. Answer: furious",                   # inline answer is cut off
        " **The breakfast was fine, nothing special.**",
    ]
    ctx = _Ctx(replies)
    result = run_dialogue(ctx, seeds, "Classify.", list(WORDS), {w: w for w in WORDS}, rounds=1,
                          known_inputs=seeds, retries=0)
    assert result.turns == 8
    assert result.empty_replies == 1
    labels_asked = [m[-1][1].split("answer is ", 1)[1].split(".")[0] for m in ctx.asked]
    assert labels_asked[:4] == ["positive", "negative", "neutral", "ambivalent"]
    assert labels_asked[4:] == ["negative", "neutral", "ambivalent", "positive"]  # rotated per window
    assert [(i.input, i.label) for i in result.items] == [
        ("A clean room and kind staff.", "positive"), ("Dirty sheets everywhere.", "negative"),
        ("The pool was nice but cold.", "ambivalent"),
        ("The breakfast was fine, nothing special.", "positive")]
    assert dict(result.dropped) == {"duplicate": 1, "copies_demos": 1, "too_short": 1}
    second = ctx.asked[1]
    assert [r for r, _ in second] == ["system", "user", "assistant", "user"]
    assert second[2][1] == "Input: A clean room and kind staff.\nAnswer: positive"  # history is labelled
    fifth = ctx.asked[4][-1][1]
    assert "Seed text number 3" in fifth and "Seed text number 0" not in fifth

def test_a_dropped_exchange_is_asked_again_hotter_and_only_the_kept_reply_enters_history():
    seeds = [Example(f"s{i}", f"Seed text number {i} about the hotel stay.", (lab,), tuple(WORDS))
             for i, lab in enumerate(["positive", "negative", "neutral"])]
    replies = [" The room was fine and clean.",            # positive: kept at once
               " The room was fine and clean.",            # negative: duplicate
               " Seed text number 0 about the hotel stay.",  # negative, retry 1: copies a seed
               " The lift was broken all week.",           # negative, retry 2: kept
               " ok", " no", " x"]                         # neutral: dropped three times
    temps = []

    class Ctx(_Ctx):
        def ask(self, messages, **kwargs):
            temps.append(kwargs["temperature"])
            return super().ask(messages, **kwargs)

    ctx = Ctx(replies)
    result = run_dialogue(ctx, seeds, "Classify.", ["positive", "negative", "neutral"],
                          {w: w for w in WORDS}, rounds=1, window=3, known_inputs=seeds, retries=2)
    assert [(i.input, i.label) for i in result.items] == [("The room was fine and clean.", "positive"),
                                                          ("The lift was broken all week.", "negative")]
    assert result.turns == 7 and result.retries == 4
    assert temps == pytest.approx([0.8, 0.8, 1.1, 1.4, 0.8, 1.1, 1.4])
    history = [c for r, c in ctx.asked[-1] if r == "assistant"]
    assert history == ["Input: The room was fine and clean.\nAnswer: positive",
                       "Input: The lift was broken all week.\nAnswer: negative"]
