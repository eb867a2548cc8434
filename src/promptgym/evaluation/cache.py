"""Persistent response cache keyed by a hash of the full request (backend identity included).

This is what makes resume nearly free: a re-run replays every completed call from here. Every
kind of answer lives in the one ``responses`` table: completions, option scores and embeddings
(a vector as a JSON list of float64, which round-trips exactly).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from typing import Any

from sqlalchemy import Column, Float, MetaData, String, Table, Text, select
from sqlalchemy.exc import SQLAlchemyError

from promptgym.errors import PromptgymError

from promptgym.models.base import (Completion, Embedding, EmbeddingRequest, GenerationRequest, OptionScores,
                                   ScoreRequest)
from promptgym.store import migrations
from promptgym.store.db import insert_new, make_engine, reason, shown_url

_metadata = MetaData()
responses = Table(
    "responses", _metadata,
    Column("key", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("response", Text, nullable=False),
    Column("created", Float, nullable=False),
    # The run whose call made the answer (None: made outside a run). A resumed run that finds its
    # own answer here with no ledger row of its own knows a kill fell between the two commits.
    Column("origin", String(64), nullable=True),
)


Request = GenerationRequest | ScoreRequest | EmbeddingRequest
Response = Completion | OptionScores | Embedding
_KINDS = {GenerationRequest: "generate", ScoreRequest: "score", EmbeddingRequest: "embed",
          Completion: "generate", OptionScores: "score", Embedding: "embed"}


def kind_of(record: Request | Response) -> str:
    """``generate``, ``score`` or ``embed``: the ledger's and the cache's name for a call."""
    return next(kind for cls, kind in _KINDS.items() if isinstance(record, cls))


def request_key(backend_identity: str, request: Request) -> str:
    kind = kind_of(request)
    blob = json.dumps({"backend": backend_identity, "kind": kind, "request": asdict(request)},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """One answer per request key, the first one stored. Many processes may share a cache (SQLite or
    PostgreSQL): two that miss the same key at once both call the model -- neither can know of the
    other's call before its answer is stored -- but only the first answer is kept, with its origin
    (a later ``put`` of the key changes nothing), and from then on every lookup of the key is a hit."""

    def __init__(self, url: str):
        self.shown_url = shown_url(url)
        self.engine = make_engine(url)
        try:
            migrations.migrate(self.engine, migrations.CACHE)
        except SQLAlchemyError as exc:
            raise PromptgymError(f"response cache {self.shown_url}: cannot open ({reason(exc)})") from None

    def get(self, key: str) -> Response | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(responses.c.kind, responses.c.response)
                               .where(responses.c.key == key)).first()
        if row is None:
            return None
        return _decode(row[0], json.loads(row[1]))

    def lookup(self, keys: list[str]) -> dict[str, tuple[Response, str | None]]:
        """Each found key's answer and the run that made it (None: made outside a run), in one read."""
        found: dict[str, tuple[Response, str | None]] = {}
        unique = list(dict.fromkeys(keys))
        with self.engine.connect() as conn:
            for start in range(0, len(unique), 500):
                chunk = unique[start:start + 500]
                rows = conn.execute(select(responses.c.key, responses.c.kind, responses.c.response,
                                           responses.c.origin).where(responses.c.key.in_(chunk))).all()
                for key, kind, blob, origin in rows:
                    found[key] = (_decode(kind, json.loads(blob)), origin)
        return found

    def put(self, key: str, response: Response, origin: str | None = None) -> None:
        """Store ``response`` unless the key has an answer already (another process stored it first:
        its answer and origin stay)."""
        with self.engine.begin() as conn:
            conn.execute(insert_new(self.engine, responses, ("key",)).values(
                key=key, kind=kind_of(response), created=time.time(), origin=origin,
                response=json.dumps(asdict(response))))


def _decode(kind: str, data: dict[str, Any]) -> Response:
    if kind == "embed":
        return Embedding(vector=tuple(data["vector"]), prompt_tokens=data.get("prompt_tokens", 0))
    if kind == "score":
        return OptionScores(logprobs=tuple(data["logprobs"]), token_counts=tuple(data["token_counts"]),
                            prompt_tokens=data.get("prompt_tokens", 0))
    return Completion(**data)
