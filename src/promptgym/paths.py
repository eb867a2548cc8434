"""Where promptgym keeps its state: run store, response cache, downloaded data, assembled models."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """PROMPTGYM_HOME, default ~/.promptgym; created on first use."""
    root = Path(os.environ.get("PROMPTGYM_HOME") or Path.home() / ".promptgym").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def default_store_url() -> str:
    return os.environ.get("PROMPTGYM_STORE") or f"sqlite:///{home() / 'runs.sqlite'}"


def default_cache_url() -> str:
    return os.environ.get("PROMPTGYM_CACHE") or f"sqlite:///{home() / 'cache.sqlite'}"


def downloads_dir() -> Path:
    path = home() / "downloads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """GGUF files assembled from a model package's chunks (``gemma3-270m``)."""
    path = home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
