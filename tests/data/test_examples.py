"""The dataset shipped in the package: loads offline, with its instruction and label set."""

from __future__ import annotations

import pytest

from promptgym.data.loaders import load_dataset
from promptgym.errors import DataError
from promptgym.sandbox import bwrap_path
from promptgym.tasks.code import CodeTestsMetric


def test_shipped_sentiment_sample():
    ds = load_dataset("example:sentiment")
    assert len(ds) == 400
    assert ds.labels == ("ambivalent", "positive", "negative", "neutral")
    assert ds.description and "sentiment" in ds.description
    assert {e.target for e in ds.examples} == set(ds.labels)


def test_unknown_example_names_the_shipped_ones():
    with pytest.raises(DataError, match=r"example:nope: no such example dataset \(shipped: formal-rewrite, python-functions, sentiment, summaries\)"):
        load_dataset("example:nope")


def test_shipped_python_functions_with_tests():
    from promptgym.data.examples import example_meta
    from promptgym.tasks.code import split_tests

    ds = load_dataset("example:python-functions")
    assert len(ds) == 48 and not ds.is_choice
    assert len({e.input for e in ds.examples}) == len(ds)
    assert ds.description and "Python" in ds.description
    assert example_meta("python-functions")["reward"] == "code-tests"
    for e in ds.examples:
        assert "assert" not in e.targets[0]  # the reference solution first, never run as a test
        assert 3 <= len(split_tests(e.targets)) <= 4


@pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap (scripts/setup.sh installs it)")
def test_every_python_function_reference_passes_its_own_tests():
    """A wrong assert in the shipped data would cap every prompt's score on that row: each reference
    solution, run in the sandbox as a model's answer would be, passes all of its row's tests."""
    metric = CodeTestsMetric()
    for e in load_dataset("example:python-functions").examples:
        run = metric.run(f"```python\n{e.targets[0]}\n```", e)
        assert run.total >= 3 and run.passed == run.total, (e.id, e.input)


def test_shipped_summaries_with_one_sentence_references():
    from promptgym.data.examples import example_meta

    ds = load_dataset("example:summaries")
    assert len(ds) >= 80 and not ds.is_choice
    assert ds.description == "Summarize the text in one sentence."
    meta = example_meta("summaries")
    assert meta["reward"] == "rouge-l" and meta["length_penalty"] == [25, 0.5] and meta["max_tokens"] >= 48
    assert len({e.input for e in ds.examples}) == len(ds)
    for e in ds.examples:
        assert len(e.targets) == 1 and len(e.target.split()) <= 20, e.id
        assert e.target.endswith(".") and e.target.count(". ") == 0, e.id  # one sentence
        assert 3 <= e.input.count(". ") + 1 <= 5, e.id  # 3-5 sentences


def test_shipped_formal_rewrite_is_judged_by_its_own_rubric():
    from promptgym.data.examples import example_meta
    from promptgym.tasks.rewards import load_reward

    ds = load_dataset("example:formal-rewrite")
    assert len(ds) == 60 and not ds.is_choice and len({e.input for e in ds.examples}) == 60
    assert all(len(e.targets) == 1 and e.target.strip() for e in ds.examples)
    assert ds.description and "formal" in ds.description
    judge = load_reward(example_meta("formal-rewrite")["reward"])
    assert judge.name == "judge" and "formal register" in judge.rubric
