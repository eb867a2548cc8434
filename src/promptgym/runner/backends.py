"""Which ``Backend`` a run's model spec means in this process, and where its cache is.

A run stores its model specs and its cache URL with any key or password removed
(``secrets.redact_spec``, ``store.db.without_password``). The ones given in this process, key and
all, are remembered in memory only, so that a resume in the same process reaches the same server;
a resume in a new process takes the key from ``OPENAI_API_KEY`` and the password from
``PROMPTGYM_CACHE``, ``PGPASSWORD`` or ``~/.pgpass`` (``forget_given`` makes this process behave so).

Backend objects given by the caller (``optimize(..., backends={"my-model": backend})``) stand for
their spec for the duration of the call: a user who brings their own client, or a test with a
scripted model, passes it instead of patching how specs are turned into backends.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

from promptgym.models.base import Backend
from promptgym.models.factory import make_backend
from promptgym.models.ray_fanout import fanned_out
from promptgym.paths import default_cache_url
from promptgym.secrets import redact_spec
from promptgym.store.db import without_password

_GIVEN_SPECS: dict[str, str] = {}  # stored (redacted) model spec -> the one given, key and all
_GIVEN_URLS: dict[str, str] = {}  # stored cache URL (no password) -> the one given
_BACKENDS: ContextVar[Mapping[str, Backend]] = ContextVar("promptgym_backends", default={})


def remember_spec(spec: str) -> str:
    """The spec as a run stores it; the given one (with its key) is kept in memory for ``backend_for``."""
    stored = redact_spec(spec)
    _GIVEN_SPECS[stored] = spec
    return stored


def remember_cache_url(url: str) -> str:
    """The cache URL as a run stores it (no password); the given one is kept in memory for ``cache_url_of``."""
    stored = without_password(url)
    _GIVEN_URLS[stored] = url
    return stored


def forget_given() -> None:
    """Drop the keys and passwords given in this process: from now on a stored run's model and
    cache are reached as a new process would reach them (keys from the environment)."""
    _GIVEN_SPECS.clear()
    _GIVEN_URLS.clear()


@contextmanager
def using(backends: Mapping[str, Backend] | None) -> Iterator[None]:
    """Within the block, each spec of ``backends`` means its backend object (keys compared as stored,
    so a spec with a key in its URL matches its redacted form)."""
    if not backends:
        yield
        return
    token = _BACKENDS.set({**_BACKENDS.get(), **{redact_spec(spec): b for spec, b in backends.items()}})
    try:
        yield
    finally:
        _BACKENDS.reset(token)


def backend_for(spec: str) -> Backend:
    """The backend a (stored) spec means here: one the caller gave, else one made from the spec as
    it was given in this process (spread over Ray tasks inside a Ray job that asks for it)."""
    given = _BACKENDS.get().get(redact_spec(spec))
    if given is not None:
        return given
    live = _GIVEN_SPECS.get(spec, spec)
    return fanned_out(live, make_backend(live))


def cache_url_of(stored: str | None) -> str:
    """The run's cache URL with its password: the one given in this process, else ``PROMPTGYM_CACHE``
    if it names the same database, else the stored one (the password then comes from PGPASSWORD or
    ~/.pgpass); no cache URL in the config means the default cache."""
    if not stored:
        return default_cache_url()
    from_env = os.environ.get("PROMPTGYM_CACHE")
    if stored not in _GIVEN_URLS and from_env and without_password(from_env) == stored:
        return from_env
    return _GIVEN_URLS.get(stored, stored)


def preflight(*backends: Backend) -> None:
    """HTTP backends check their endpoint answers before any work (a dead one fails in seconds
    with one line, not after the retries' backoff in the middle of the search). A pool with some
    endpoints down starts, with one warning line on stderr (once for the same warning)."""
    warnings: list[str] = []
    for backend in {id(b): b for b in backends}.values():
        check = getattr(backend, "preflight", None)
        warning = check() if check is not None else None
        if warning and warning not in warnings:
            warnings.append(warning)
            print(f"promptgym: warning: {warning}", file=sys.stderr, flush=True)
