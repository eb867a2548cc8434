"""Keys and passwords kept out of everything promptgym stores or prints.

A key written into a model URL (``openai:MODEL@http://user:KEY@host/v1``, ``?api_key=KEY``) or a
password in a database URL is used in memory only: what is stored and printed has ``***`` in its
place (``redact_url``, ``redact_spec``), and every key seen in this process is remembered so that
``scrub`` can remove it from any message, an error from a library included. A low module: the
models, the store, the data loaders and the CLI all redact through it.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"
_SECRET_PARAMS = {"key", "api_key", "apikey", "api-key", "token", "access_token", "secret", "password"}
_SECRETS: set[str] = set()  # keys seen in this process, scrubbed from any message (never stored)


def redact_url(url: str) -> str:
    """``http://user:KEY@host/v1`` -> ``http://user:***@host/v1`` (a lone ``KEY@`` -> ``***@``), and
    ``?api_key=KEY`` -> ``?api_key=***``; the key is remembered for ``scrub``, never returned."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, sep, password = userinfo.partition(":")
        secret = password if sep else user
        if secret and secret != REDACTED:
            _SECRETS.add(secret)
        netloc = (f"{user}:{REDACTED}" if sep else REDACTED) + "@" + host
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_PARAMS for k, _ in pairs):
            for k, v in pairs:
                if k.lower() in _SECRET_PARAMS and v and v != REDACTED:
                    _SECRETS.add(v)
            query = urlencode([(k, REDACTED if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_spec(spec: str) -> str:
    """A model spec as it may be stored and printed: any key in an ``openai:MODEL@URL`` removed."""
    if spec.startswith("openai:") and "@" in spec:
        model, _, urls = spec.partition("@")  # one base URL, or a pool: URL,URL,...
        return f"{model}@" + ",".join(redact_url(url) for url in urls.split(","))
    return spec


def remember_secret(secret: str | None) -> None:
    if secret and len(secret) >= 4 and secret != REDACTED:
        _SECRETS.add(secret)


def scrub(text: str) -> str:
    """``text`` with every key seen in this process, and URL user info, replaced by ``***``."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    # any scheme: model URLs (http, https) and database URLs (postgresql+psycopg://user:PASSWORD@host)
    return re.sub(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/@:]*:)[^\s/@]+@", rf"\1{REDACTED}@", text)
