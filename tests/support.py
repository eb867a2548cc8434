"""Test helpers importable from any test module (``from support import make_examples``)."""

from __future__ import annotations

from promptgym.data.dataset import Example

LABELS = ("positive", "negative", "neutral", "ambivalent")


def make_examples(n: int, prefix: str = "ex") -> list[Example]:
    """Synthetic 4-way sentiment examples with distinct ids."""
    return [Example(id=f"{prefix}{i}", input=f"Review number {i}: the service was {LABELS[i % 4]} overall.",
                    targets=(LABELS[i % 4],), choices=LABELS) for i in range(n)]
