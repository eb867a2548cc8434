"""The one door for data over HTTP: :func:`fetch` one file, :func:`write_atomic` it into a cache, and
:func:`no_download` to forbid fetching (a report that shows inputs must not fetch data to do so).

Every data source that downloads (``bigbench:``, ``paper:``) goes through here, so they retry, cap,
time out and word their failures alike.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path
from typing import NoReturn

from promptgym.version import __version__

TRIES = 3  # of one file, when the failure may pass (5xx, 429, connection dropped, body cut short)
RETRY_PAUSE = 0.25  # seconds, doubled each try

_NO_DOWNLOAD: ContextVar[bool] = ContextVar("promptgym_no_download", default=False)


@contextmanager
def no_download() -> Iterator[None]:
    """Inside it, data not yet on this machine is a DataError instead of a download: every source
    that would fetch (``bigbench:``, ``paper:``) asks :func:`downloads_allowed` first. No network, no
    pip. ``hf:`` is not covered: the ``datasets`` library reads ``HF_HUB_OFFLINE`` only when it is
    imported, so it cannot be switched for the duration."""
    token = _NO_DOWNLOAD.set(True)
    try:
        yield
    finally:
        _NO_DOWNLOAD.reset(token)


def downloads_allowed() -> bool:
    """False inside :func:`no_download`."""
    return not _NO_DOWNLOAD.get()


class DownloadError(Exception):
    """A file could not be fetched; the message is the reason in a few words. ``absent``: the server
    said it has no such file (404), as opposed to failing to answer or answering with something
    unusable."""

    def __init__(self, reason: str, absent: bool = False) -> None:
        super().__init__(reason)
        self.absent = absent


class _Retry(Exception):
    """A failure of one request that may pass if the request is made again."""


def fetch(url: str, *, max_bytes: int, timeout: float, what: str) -> bytes:
    """The body at ``url`` (http, https or file); any failure is a DownloadError with a short reason
    (404: ``absent``, "404: no such WHAT there"). A URL urllib cannot parse is a ValueError (the caller
    says which setting made it).

    urllib from the standard library, not an HTTP client package: the core's dependencies include
    none (httpx comes only with the ``openai`` extra), and one small GET per file needs no more. It
    honours the usual proxy variables (``https_proxy``, ``no_proxy``...). ``timeout`` bounds the
    connect and each read, so an unreachable host fails in seconds. A failure that may pass (HTTP
    5xx or 429, the connection dropped, a body cut short) is tried again, up to three tries; a
    refused connection, a timeout, an unknown host or another HTTP status is not. A body over
    ``max_bytes`` is refused, as soon as it is announced or read.
    """
    for attempt in range(TRIES):
        try:
            return _fetch_once(url, max_bytes, timeout, what)
        except _Retry as exc:
            if attempt == TRIES - 1:
                return _fail(f"{exc}, {TRIES} tries")
            time.sleep(RETRY_PAUSE * 2**attempt)
    raise AssertionError("unreachable")


def _fetch_once(url: str, max_bytes: int, timeout: float, what: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": f"promptgym/{__version__}"})
    try:
        # an opener per request: it reads the proxy variables as they are now (urlopen's shared one
        # keeps those of its first use)
        with urllib.request.build_opener().open(request, timeout=timeout) as reply:
            declared = reply.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                return _fail(f"{int(declared):,} bytes, over the {max_bytes:,}-byte limit for a {what}")
            body = bytearray()
            while chunk := reply.read(1 << 16):
                body += chunk
                if len(body) > max_bytes:
                    return _fail(f"over the {max_bytes:,}-byte limit for a {what}")
            if declared.isdigit() and len(body) < int(declared):
                raise _Retry(f"body cut short: {len(body):,} of {int(declared):,} bytes")
            return bytes(body)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return _fail(f"404: no such {what} there", absent=True)
        if exc.code == 429 or exc.code >= 500:
            raise _Retry(f"HTTP {exc.code}") from None
        return _fail(f"HTTP {exc.code} {exc.reason}".strip())
    except http.client.IncompleteRead as exc:
        raise _Retry(f"body cut short: {len(exc.partial):,} bytes came") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        cause = exc.reason if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException) else exc
        if isinstance(cause, (TimeoutError, socket.timeout)):
            return _fail(f"no answer in {timeout:g} s")
        if isinstance(cause, ConnectionRefusedError):
            return _fail("connection refused")
        if isinstance(cause, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
                              http.client.RemoteDisconnected)):
            raise _Retry("the connection closed before a whole reply") from None
        if isinstance(cause, socket.gaierror):
            return _fail(f"host not found: {cause.strerror or cause}")
        if isinstance(cause, ssl.SSLError):
            return _fail(f"TLS: {cause.reason or cause}")
        if isinstance(cause, http.client.HTTPException):
            return _fail(f"not an HTTP reply ({type(cause).__name__})")
        return _fail(str(getattr(cause, "strerror", None) or cause) or type(cause).__name__)


def _fail(reason: str, absent: bool = False) -> NoReturn:
    raise DownloadError(reason, absent)


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder and rename it into place, so a killed
    process never leaves a half file under the name a later load reads. The file gets the mode a
    plain new file would (mkstemp's 0600 is lifted to what the umask allows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
