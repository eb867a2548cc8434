"""Small datasets shipped inside the package, so the quickstart needs no download.

Each ``NAME.jsonl`` has a ``NAME.md`` beside it with its source, licence and attribution, and may
have a ``NAME.meta.json``: ``instruction`` (the starting prompt) and ``reward`` (the spec of the
reward it is scored with, e.g. ``code-tests``; accuracy / exact match when absent),
``length_penalty`` (``[WORDS, WEIGHT]``: the brevity term that goes with that reward) and
``max_tokens`` (the token cap of a generated answer). A dataset scored by a judge ships its rubric
as ``NAME.rubric.md`` (reward ``judge:example:NAME``).
"""

from __future__ import annotations

import json
from importlib import resources

from promptgym.data.dataset import Dataset
from promptgym.data.rows import rows_to_dataset
from promptgym.errors import DataError


def available() -> list[str]:
    return sorted(p.name[:-6] for p in resources.files(__package__).iterdir() if p.name.endswith(".jsonl"))


def example_meta(name: str) -> dict:
    """The example's ``NAME.meta.json`` ({} when it has none or there is no such example)."""
    meta_path = resources.files(__package__) / f"{name}.meta.json"
    return json.loads(meta_path.read_text()) if meta_path.is_file() else {}


def load_example(name: str, input_template: str | None = None) -> Dataset:
    names = available()
    if name not in names:
        raise DataError(f"example:{name}: no such example dataset (shipped: {', '.join(names)})")
    path = resources.files(__package__) / f"{name}.jsonl"
    meta = example_meta(name)
    rows = ((f"example:{name}:{i}", json.loads(line))
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if line.strip())
    dataset = rows_to_dataset(rows, source=f"example:{name}", name=name, input_template=input_template)
    dataset.description = meta.get("instruction")
    return dataset
