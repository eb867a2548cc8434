"""Load datasets from JSONL, CSV, BIG-bench, the papers' data, the shipped examples or the Hugging
Face ``datasets`` library (or exact splits from files), with one-line errors that name the file and
row. This module only chooses the source by the spec's prefix: each source reads its rows with
``promptgym.data.rows``, so the imports point one way."""

from __future__ import annotations

from dataclasses import replace

from promptgym.data.bigbench import load_bigbench
from promptgym.data.dataset import Dataset, Example, Splits
from promptgym.data.examples import load_example
from promptgym.data.hf import load_hf
from promptgym.data.papers import load_paper
from promptgym.data.fields import TEMPLATE_FLAG
from promptgym.data.rows import infer_label_set, load_file
from promptgym.errors import DataError


def load_dataset(
    spec: str,
    input_field: str | None = None,
    target_field: str | None = None,
    choices_field: str | None = None,
    infer_choices: bool = True,
    input_template: str | None = None,
) -> Dataset:
    """``spec`` is a path to a .jsonl/.csv file, ``bigbench:TASK[/SUBTASK]``, ``example:NAME`` or
    ``paper:PAPER/TASK`` or ``hf:NAME[/CONFIG][@SPLIT]`` (the ``datasets`` library, ``promptgym.data.hf``).
    ``input_template`` renders the input from named fields (``promptgym.data.fields``): files,
    ``hf:`` and ``example:`` rows have them; BIG-bench tasks and the papers' tasks have one input each."""
    if spec.startswith("hf:"):
        return load_hf(spec[3:], input_field=input_field, target_field=target_field,
                       choices_field=choices_field, infer_choices=infer_choices, input_template=input_template)
    if input_template is not None and spec.startswith(("bigbench:", "paper:")):
        raise DataError(f"{spec}: {TEMPLATE_FLAG} needs rows with named fields (a .jsonl/.csv file, hf:..., "
                        "example:... or rows given in Python); this source has one input per example")
    if spec.startswith("bigbench:"):
        return load_bigbench(spec.split(":", 1)[1])
    if spec.startswith("example:"):
        return load_example(spec.split(":", 1)[1], input_template=input_template)
    if spec.startswith("paper:"):
        return load_paper(spec.split(":", 1)[1])
    return load_file(spec, input_field=input_field, target_field=target_field, choices_field=choices_field,
                     infer_choices=infer_choices, input_template=input_template)


def load_split_files(
    train: str, dev: str | None = None, test: str | None = None, input_field: str | None = None,
    target_field: str | None = None, choices_field: str | None = None,
    labels: tuple[str, ...] | None = None, labels_from: str = "", input_template: str | None = None,
) -> Splits:
    """Exact splits from files (``--train/--dev/--test``): each file's rows, in order, nothing
    shuffled or resampled. Ids are ``train-0``, ``dev-3``, ``test-7`` (split, row index), so the
    three files never share one. The files are one task, so the label set is decided over all
    their rows together: their own choices (one shared set everywhere when train has one), else
    ``labels`` (the ``--dataset``'s, named ``labels_from``), else one inferred from the targets of
    all three files (a small test file alone would not show every label)."""
    loaded: dict[str, list[Example]] = {}
    sources: dict[str, str] = {}
    for split, spec in (("train", train), ("dev", dev), ("test", test)):
        if spec is None:
            continue
        data = load_dataset(spec, input_field=input_field, target_field=target_field,
                            choices_field=choices_field, infer_choices=False, input_template=input_template)
        loaded[split] = [replace(e, id=f"{split}-{e.id}") for e in data.examples]
        sources[split] = spec
    with_choices = [s for s in loaded if loaded[s][0].choices is not None]  # a file: all rows or none
    if with_choices and len(with_choices) < len(loaded):
        bare = next(s for s in loaded if s not in with_choices)
        raise DataError(f"{sources[bare]}: no choices field, but the rows of {sources[with_choices[0]]} have "
                        "one: give the options in every file or in none")
    everything = [e for split in loaded for e in loaded[split]]
    if with_choices:
        shared = Dataset("train", loaded["train"]).labels
        if shared is not None:
            if labels is not None and set(labels) != set(shared):
                raise DataError(f"{train}: the label set {list(shared)} differs from {labels_from}'s {list(labels)}")
            for e in everything:
                if set(e.choices or ()) != set(shared):
                    raise DataError(f"{e.where}: choices {list(e.choices or ())} differ from the train file's "
                                    f"label set {list(shared)}")
    elif labels is not None:
        for e in everything:
            if e.target.strip() not in labels:
                raise DataError(f"{e.where}: target '{e.target}' is not one of the choices {list(labels)} "
                                f"(the label set of {labels_from})")
        everything = [replace(e, targets=(e.target.strip(),), choices=labels) for e in everything]
    else:
        everything = infer_label_set(everything)
    n_train, n_dev = len(loaded["train"]), len(loaded.get("dev", ()))
    return Splits(train=everything[:n_train], dev=everything[n_train:n_train + n_dev],
                  test=everything[n_train + n_dev:])
