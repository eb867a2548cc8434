"""Datasets: examples, loaders (JSONL, CSV, BIG-bench, papers, Hugging Face) and seeded splits."""

from promptgym.data.dataset import Dataset, Example, Splits, split_dataset
from promptgym.data.loaders import load_dataset

__all__ = ["Dataset", "Example", "Splits", "split_dataset", "load_dataset"]
