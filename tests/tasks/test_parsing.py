"""Answer extraction and option matching on the messy text small models write."""

from __future__ import annotations

import pytest

from promptgym.tasks.parsing import extract_answer, last_option, match_option, match_reasoned, normalize

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


# -- reasoning replies: the answer is read from the end -------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    # the answer line after reasoning that names other options first
    ("The food was cold, so not positive; could be neutral.\nAnswer: negative", 1),
    # several answer lines: the last one counts (the model changed its mind)
    ("Answer: positive\nWait, the waiter was rude.\nAnswer: negative", 1),
    ("answer: Neutral.\nFinal answer: positive", 0),
    ("**Answer:** neutral", 2),
    ("Answer:\n  negative", 1),  # the option on the line after the lead
    ("Answer: negative, not positive", 1),  # the answer line's first option, as a direct answer is matched
    # no answer line: the option named last in the reasoning
    ("It sounds positive at first, but overall it is negative.", 1),
    ("positive or negative? I would say neutral", 2),
    # an answer line that names no option: the option named last anywhere
    ("The review is negative.\nAnswer: <option>", 1),
    # nothing named at all
    ("I cannot tell from this text.\nAnswer: unclear", None),
    ("", None),
])
def test_match_reasoned_reads_the_answer_from_the_end(text, expected):
    assert match_reasoned(text, OPTIONS) == expected


def test_match_reasoned_differs_from_direct_matching_where_the_reasoning_names_options_first():
    text = "Positive words appear, but the tone is sarcastic.\nAnswer: negative"
    assert match_option(text, OPTIONS) == 0  # direct matching: the first option named
    assert match_reasoned(text, OPTIONS) == 1


def test_last_option_prefers_the_latest_then_the_longer_option():
    assert last_option("positive, then negative", OPTIONS) == 1
    assert last_option("It is not positive", ["positive", "not positive"]) == 1
    assert last_option("positively negatively", OPTIONS) is None  # whole words only
    assert last_option("anything", ["", "other"]) is None
