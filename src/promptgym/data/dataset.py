"""The data model: an Example is one input with its accepted answers (and options, if any)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from promptgym.errors import DataError


@dataclass(frozen=True)
class Example:
    """One labelled input.

    ``targets`` holds every accepted answer (the first is the canonical one); ``choices`` is set for
    multiple-choice / classification examples and then ``targets[0]`` is one of the choices.
    ``fields``: when the input was rendered from named fields (``--input-template``), those fields
    as (name, text) pairs in the template's order, so the input can be rendered again and a
    metric can read them (``dict(example.fields)``); empty otherwise.
    """

    id: str
    input: str
    targets: tuple[str, ...]
    choices: tuple[str, ...] | None = None
    where: str = field(default="", compare=False, repr=False)  # "file:line" for messages, not identity
    fields: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def target(self) -> str:
        return self.targets[0]


@dataclass
class Dataset:
    name: str
    examples: list[Example]
    description: str | None = None  # the task's own instruction, used as the default prompt
    source: str = ""

    def __post_init__(self) -> None:
        if not self.examples:
            raise DataError(f"{self.source or self.name}: no examples")

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The shared label set when every example has the same choices, else None."""
        first = self.examples[0].choices
        if first is None:
            return None
        return first if all(e.choices == first for e in self.examples) else None

    @property
    def is_choice(self) -> bool:
        return all(e.choices for e in self.examples)


@dataclass
class Splits:
    train: list[Example]
    dev: list[Example] = field(default_factory=list)
    test: list[Example] = field(default_factory=list)


def split_dataset(
    dataset: Dataset, train_size: int, test_size: int, dev_size: int = 0, seed: int = 0, dev_rest: int = 0
) -> Splits:
    """Disjoint, seeded train/dev/test samples (one permutation, cut in three).

    The test split is cut first from the permutation so that changing ``train_size`` does not
    change which examples are held out. ``dev_rest``: dev goes on, after its ``dev_size`` examples,
    with up to that many more of the examples in no split, in the permutation's order (a pool for a
    race that draws dev while it is undecided); train and test stay as they are without it.
    """
    n = len(dataset)
    if train_size < 1:
        raise DataError(f"{dataset.source or dataset.name}: --train-size must be at least 1")
    if test_size < 0 or dev_size < 0:
        raise DataError(f"{dataset.source or dataset.name}: --test-size and --dev-size must be 0 or more")
    if train_size + dev_size + test_size > n:
        raise DataError(
            f"{dataset.source or dataset.name}: asked for {train_size}+{dev_size}+{test_size} "
            f"examples (train+dev+test) but the dataset has {n}"
        )
    order = np.random.default_rng(seed).permutation(n)
    picked = [dataset.examples[i] for i in order]
    test = picked[:test_size]
    dev = picked[test_size : test_size + dev_size]
    train = picked[test_size + dev_size : test_size + dev_size + train_size]
    rest = test_size + dev_size + train_size
    dev += picked[rest : rest + max(dev_rest, 0)]
    return Splits(train=train, dev=dev, test=test)
