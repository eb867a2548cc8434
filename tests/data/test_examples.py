"""The dataset shipped in the package: loads offline, with its instruction and label set."""

from __future__ import annotations

import pytest

from promptgym.data.loaders import load_dataset
from promptgym.errors import DataError


def test_shipped_sentiment_sample():
    ds = load_dataset("example:sentiment")
    assert len(ds) == 400
    assert ds.labels == ("ambivalent", "positive", "negative", "neutral")
    assert ds.description and "sentiment" in ds.description
    assert {e.target for e in ds.examples} == set(ds.labels)


def test_unknown_example_names_the_shipped_ones():
    with pytest.raises(DataError, match=r"example:nope: no such example dataset \(shipped: sentiment\)"):
        load_dataset("example:nope")
