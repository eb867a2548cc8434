"""How the OpenAI-compatible backend talks HTTP, below the SDK: the transport that counts each
failed attempt by kind (the faults of the call being made, a context variable each worker task
sets), the event loop a batch runs on, and an SDK error as one line (where it went wrong is the
caller's to add)."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from typing import Any

# The faults of the logical call being made (kind -> count); each worker task sets its own dict.
FAULTS: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar("promptgym_faults", default=None)


def note(kind: str) -> None:
    faults = FAULTS.get()
    if faults is not None:
        faults[kind] = faults.get(kind, 0) + 1


def counting_client(openai: Any) -> Any:
    """The SDK's default async HTTP client over a transport that notes each failed attempt's kind
    (``http_429``, ``http_503``, ``timeout``, ``connection``, ...) in the current call's faults."""
    base = next(c for c in openai.DefaultAsyncHttpxClient.__mro__ if c.__name__ == "AsyncClient")
    httpx = sys.modules[base.__module__.split(".")[0]]

    class Counting(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1000,
                                                                      max_keepalive_connections=100))

        async def handle_async_request(self, request):
            try:
                response = await self.inner.handle_async_request(request)
            except httpx.TimeoutException:
                note("timeout")
                raise
            except httpx.TransportError:
                note("connection")
                raise
            if response.status_code in (408, 409, 429) or response.status_code >= 500:
                note(f"http_{response.status_code}")
            return response

        async def aclose(self) -> None:
            await self.inner.aclose()

    return openai.DefaultAsyncHttpxClient(transport=Counting())


def root_cause(exc: BaseException) -> str:
    """The socket-level reason (e.g. "[Errno 111] Connection refused") under the SDK's and httpx's
    generic wrappers, else the closest wrapper's message."""
    best, seen = "", set()
    current: BaseException | None = exc.__cause__ or exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = short(current)
        if text and (not best or isinstance(current, OSError)):
            best = text
        current = current.__cause__ or current.__context__
    return best or exc.__class__.__name__


def server_message(exc: Any) -> str:
    """The server's own words: ``{"error": {"message": ...}}`` (OpenAI), ``{"detail": ...}`` (FastAPI),
    or the raw body."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        text = body.get("message") or body.get("detail") or body.get("error") or body
    elif body:
        text = body
    else:
        response = getattr(exc, "response", None)
        text = getattr(response, "reason_phrase", "") or short(exc)
    return short(text)


def short(value: object) -> str:
    return " ".join(str(value).split())[:300]


def problem(openai: Any, exc: Exception, timeout: float, retries: str) -> str:
    """An SDK error in one line, without where: the HTTP status, the server's own words and the
    likely fix (``retries``: " after N retries" where the SDK made them, else "")."""
    if isinstance(exc, openai.APITimeoutError):
        return f"no answer within {timeout:g}s" + (f" ({retries.strip()})" if retries else "") + \
            "; is the server overloaded?"
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot connect ({root_cause(exc)}); is the server running at that address?"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = server_message(exc)
        hint = {
            401: "check OPENAI_API_KEY",
            403: "check OPENAI_API_KEY and the key's permissions",
            404: "check the model name and that the base URL ends in /v1",
            429: f"still rate limited{retries}",
        }.get(status, f"still failing{retries}" if status >= 500 else "")
        return f"HTTP {status}: {message}" + (f" ({hint})" if hint.strip() else "")
    return f"{exc.__class__.__name__}: {short(exc)}"


def run_sync(coro) -> None:
    """asyncio.run, also from inside a running loop (e.g. a notebook): then in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    error: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:  # pragma: no cover - re-raised below
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
