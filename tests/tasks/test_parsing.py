"""Answer extraction and option matching on the messy text small models write."""

from __future__ import annotations

import pytest

from promptgym.tasks.parsing import extract_answer, match_option, normalize

OPTIONS = ["positive", "negative", "neutral"]


@pytest.mark.parametrize("text, expected", [
    ("Answer: Positive.", "Positive"),
    ("answer - 42", "42"),
    ("The answer is 42", "42"),
    ("The final answer is: neutral", "neutral"),
    ("Final answer: Paris", "Paris"),
    ("**neutral**", "neutral"),
    ("Label: **Negative**", "Negative"),
    ("'positive'", "positive"),
    ("“Paris”", "Paris"),
    ("Answer:\n  \"Neutral\"", "Neutral"),
    ("\n\n  Paris.\nBecause it is the capital.", "Paris"),
    ("A: neutral", "neutral"),
    ("A nice day", "A nice day"),
    ("The answer isn't clear", "The answer isn't clear"),
    ("", ""),
    ("   \n ... \n", ""),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_normalize():
    assert normalize("  **Hello   World!** ") == "hello world"
    assert normalize("«Straße»") == "strasse"


@pytest.mark.parametrize("text, expected", [
    ("Answer: Positive.", 0),
    ("The sentiment is negative", 1),
    ("**neutral**", 2),
    ("NEUTRAL", 2),
    ("Sure! Let me look at the review.\nThe reviewer sounds unhappy.\nSo the label is negative.", 1),
    ("I think it's neutral, not positive.", 2),  # the first mention wins
    ("positively glowing", None),  # whole words only
    ("I cannot tell.", None),
    ("", None),
])
def test_match_option(text, expected):
    assert match_option(text, OPTIONS) == expected


def test_match_option_prefers_the_longer_overlapping_option():
    assert match_option("It is not positive at all", ["positive", "not positive"]) == 1
    assert match_option("very positive", ["positive", "very positive"]) == 1


def test_match_option_exact_answer_beats_earlier_mentions():
    # the extracted answer is an exact option even though 'negative' is not first in the body
    assert match_option("negative", ["positive", "negative"]) == 1
    assert match_option("Answer: no\nyes was tempting", ["yes", "no"]) == 1


def test_match_option_ignores_empty_options():
    assert match_option("anything", ["", "other"]) is None
