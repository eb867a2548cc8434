"""Run store: every run, candidate, score and model call, in SQLite (or any SQLAlchemy URL)."""

from promptgym.store.db import make_engine
from promptgym.store.runs import RunStore

__all__ = ["RunStore", "make_engine"]
