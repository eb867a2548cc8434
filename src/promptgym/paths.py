"""Where promptgym keeps its state: run store, response cache, downloaded data, assembled models."""

from __future__ import annotations

import os
from pathlib import Path

from promptgym.errors import PromptgymError


def home() -> Path:
    """PROMPTGYM_HOME, default ~/.promptgym; created on first use. A path that cannot be a
    writable directory (a file, a file's child, no permission) is one line naming it."""
    given = os.environ.get("PROMPTGYM_HOME")
    root = Path(given or Path.home() / ".promptgym").expanduser()
    return _directory(root, "PROMPTGYM_HOME" if given else "the state directory (PROMPTGYM_HOME unset)")


def _directory(path: Path, what: str) -> Path:
    name = f"{what}={path}" if what == "PROMPTGYM_HOME" else f"{what} {path}"
    if path.exists() and not path.is_dir():
        raise PromptgymError(f"{name}: not a directory (point PROMPTGYM_HOME at a directory)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            reason = "a part of the path is a file"
        raise PromptgymError(f"{name}: cannot create the directory ({reason})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise PromptgymError(f"{name}: not writable (point PROMPTGYM_HOME at a directory you can write)")
    return path


def default_store_url() -> str:
    return os.environ.get("PROMPTGYM_STORE") or f"sqlite:///{home() / 'runs.sqlite'}"


def default_cache_url() -> str:
    return os.environ.get("PROMPTGYM_CACHE") or f"sqlite:///{home() / 'cache.sqlite'}"


def downloads_dir() -> Path:
    return _directory(home() / "downloads", "the downloads directory")


def models_dir() -> Path:
    """GGUF files assembled from a model package's chunks (``gemma3-270m``)."""
    return _directory(home() / "models", "the models directory")
