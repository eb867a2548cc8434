"""A small OpenAI-protocol server on 127.0.0.1 (stdlib only) for testing the HTTP path for real.

It answers ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/models`` with canned text, can fail
the first N requests with a status (429, 503, ...) and a ``retry-after-ms`` wait, checks the API key
(``Authorization: Bearer KEY`` only, on every route) and the model name like a real server (401 /
404 with an OpenAI-shaped error body), rejects the requests a test picks (400), records every
request it received (POSTs in ``received``, GETs in ``gets``) with its arrival time and measures the
largest number of requests in flight at once.

``/v1/completions`` with ``echo=True`` and ``logprobs`` echoes the prompt split into word tokens
(``"a b"`` -> ``"a"``, ``" b"``) whose log-probability is ``-len(token) / 10``, the first one ``None``,
so a client's option scores can be checked exactly (see ``fake_logprob``).

``/v1/embeddings`` answers ``fake_vector(text)`` per input (or, with ``per_token_embeddings``, one
row per word whose mean is that vector, as llama.cpp without pooling does), in reversed order with
their ``index`` (clients must sort), and counts one prompt token per word.

Fault injection (``faults=Faults(rate=0.3, seed=...)``): each POST attempt to a model route is
faulted with probability ``rate``, drawn from a seeded generator keyed by (seed, route, body, attempt
number of that body), so a run's faults do not depend on arrival order under concurrency; at most
``max_per_request`` faults in a row per body, so a client that retries always gets through.
Kinds (named as the client's ledger names them): ``http_429`` (with Retry-After), ``http_500``,
``http_503``, ``connection`` (reset without an answer), ``timeout`` (answers only after
``slow_seconds``: set it past the client's timeout), ``truncated`` (a 200 whose JSON is cut
short), ``empty`` / ``garbage`` (valid JSON, empty text / no usable choice) and ``no_logprobs``
(only for requests that ask for ``logprobs``). ``injected`` counts them by kind.

Bounded: after ``max_requests`` requests, or ``lifetime`` seconds, the server stops by itself.

Killed (``kill()``, or by itself after ``kill_after`` requests): like a process that dies, it stops
listening and resets every open connection, so requests in flight (and keep-alive connections) get no
answer. ``answered`` counts the 200 answers it sent to POSTs (model calls that reached a client), so a
test can compare the calls a pool of servers answered with a run's ledger.

Like Ollama (``echo_logprobs=False``): ``/v1/completions`` ignores ``echo`` and ``logprobs`` (Ollama's
OpenAI API has no ``echo``, so no prompt log-probabilities).

First-token log-probabilities (``alternatives``: a fixed list of (token, log-probability), or a
function of the request body giving one): a ``/v1/chat/completions`` request with ``logprobs=true``
answers the first token with its first ``top_logprobs`` alternatives (``choices[0].logprobs.content``),
a ``/v1/completions`` request with ``logprobs=K`` and no echo the same as ``top_logprobs[0]``; with
``max_top_logprobs`` a larger K is a 400, as at OpenAI (20) and vLLM. Without ``alternatives`` the
server ignores ``logprobs`` on chat, like a server that has none.
"""

from __future__ import annotations

import json
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

TOKEN = re.compile(r"\s*\S+|\s+")


def fake_tokens(text: str) -> list[str]:
    """The fake server's tokenizer: words with their leading whitespace."""
    return TOKEN.findall(text)


def fake_logprob(token: str) -> float:
    return -len(token) / 10


def fake_vector(text: str) -> list[float]:
    return [float(len(text)), float(len(fake_tokens(text))), 0.5]


KINDS = ("http_429", "http_500", "http_503", "connection", "timeout", "truncated", "empty", "garbage",
         "no_logprobs")


@dataclass(frozen=True)
class Faults:
    """A seeded mix of faults; ``kinds`` weighs them equally (a kind may be repeated to weigh more)."""

    rate: float = 0.3
    seed: int = 0
    kinds: tuple[str, ...] = KINDS
    max_per_request: int = 2
    slow_seconds: float = 2.6
    after: int = 0  # the first ``after`` requests are never faulted
    routes: tuple[str, ...] = ("/v1/chat/completions", "/v1/completions")

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(KINDS)
        assert not unknown, f"unknown fault kinds {unknown}"


@dataclass
class Received:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival: gaps between retries are measured here, server-side
    peer: tuple | None = None  # the client's (host, port): which process sent it, for a test that asks the OS


@dataclass
class FakeOpenAIServer:
    """Start with ``start()`` (or use as a context manager); ``base_url`` ends in ``/v1``.

    ``reply`` is the canned text, or a function of the request body returning it. ``fail_first``
    requests (counted over all routes) get ``fail_status`` and ask for a ``retry_after_ms`` wait; ``delay`` seconds of sleep per request
    make concurrency measurable.
    """

    reply: str | Callable[[dict[str, Any]], str] = "positive"
    models: tuple[str, ...] = ("fake-model",)
    api_key: str | None = None
    fail_first: int = 0
    fail_status: int = 503
    retry_after_ms: int = 10
    delay: float = 0.0
    reject: Callable[[dict[str, Any]], bool] | None = None  # -> 400 for the requests it picks
    per_token_embeddings: bool = False
    faults: Faults | None = None
    max_requests: int = 20_000
    lifetime: float = 300.0
    kill_after: int | None = None
    echo_logprobs: bool = True
    alternatives: list[tuple[str, float]] | Callable[[dict[str, Any]], list[tuple[str, float]]] | None = None
    max_top_logprobs: int | None = None
    answered: int = 0
    killed: bool = False
    _connections: set = field(default_factory=set)
    injected: Counter = field(default_factory=Counter)
    received: list[Received] = field(default_factory=list)
    gets: list[Received] = field(default_factory=list)  # GET requests (GET /v1/models: a client's preflight)
    max_in_flight: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _attempts: Counter = field(default_factory=Counter)  # per body: attempts, faults in a row
    _in_a_row: Counter = field(default_factory=Counter)
    _timer: threading.Timer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "FakeOpenAIServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like a real server
            # TCP_NODELAY, like a real server: the headers and the body go out as two writes, and
            # with Nagle on the body waited for the client's delayed ACK (~40 ms per answer).
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def setup(self) -> None:
                super().setup()
                with owner._lock:
                    owner._connections.add(self.connection)

            def finish(self) -> None:
                with owner._lock:
                    owner._connections.discard(self.connection)
                try:
                    super().finish()
                except OSError:  # a killed server's connection
                    pass

            def do_GET(self) -> None:
                with owner._lock:
                    owner.gets.append(Received(self.path, {}, {k.lower(): v for k, v in self.headers.items()},
                                               time.monotonic(), self.client_address))
                if self.path.split("?")[0].rstrip("/") == "/v1/models":
                    if not owner._authorized(dict(self.headers.items())):
                        self._send(401, _error("Incorrect API key provided.", "invalid_request_error"))
                        return
                    self._send(200, {"object": "list", "data": [
                        {"id": m, "object": "model", "owned_by": "fake"} for m in owner.models]})
                else:
                    self._error(404, f"no route {self.path}", "not_found")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self._error(400, "body is not JSON", "invalid_request_error")
                    return
                status, payload, headers = owner._handle(self.path, body, dict(self.headers.items()),
                                                         peer=self.client_address)
                action = headers.pop("x-fake-action", None)
                if action == "kill":
                    owner.kill()
                if owner.killed:
                    action = "connection"
                if action == "connection":  # hang up with a reset, no answer
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                if action == "stop":
                    self.close_connection = True
                    threading.Thread(target=owner.stop, daemon=True).start()
                    return
                self._send(status, payload, headers, truncate=action == "truncated")
                if status == 200:
                    with owner._lock:
                        owner.answered += 1

            def _error(self, status: int, message: str, kind: str) -> None:
                self._send(status, {"error": {"message": message, "type": kind, "code": status}})

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None,
                      truncate: bool = False) -> None:
                data = json.dumps(payload).encode()
                if truncate:
                    data = data[: len(data) // 2]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        with self._lock:
            server, self._server = self._server, None
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        if server is not None:
            server.shutdown()
            server.server_close()

    def kill(self) -> None:
        """Die like a process: stop listening and reset every open connection (see the docstring)."""
        with self._lock:
            self.killed = True
            connections = list(self._connections)
        self.stop()
        for connection in connections:
            try:
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def requests_to(self, route: str) -> list[Received]:
        return [r for r in self.received if r.path.endswith(route)]

    # -- the protocol ------------------------------------------------------------------------------

    def _handle(self, path: str, body: dict[str, Any], headers: dict[str, str], peer: tuple | None = None):
        with self._lock:
            self.received.append(Received(path, body, {k.lower(): v for k, v in headers.items()},
                                          time.monotonic(), peer))
            number = len(self.received)
            if number > self.max_requests:
                return 503, _error("fake server: request limit reached", "server_error"), {"x-fake-action": "stop"}
            if self.kill_after is not None and number > self.kill_after:
                return 0, {}, {"x-fake-action": "kill"}
            fault = self._draw_fault(path, body, number)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            if fault is not None:
                return self._fault(fault, path, body, headers, number)
            return self._answer(path, body, headers, number)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _draw_fault(self, path: str, body: dict[str, Any], number: int) -> str | None:
        """(Under the lock.) This attempt's fault, or None: seeded by the body and its attempt number."""
        plan = self.faults
        route = path.split("?")[0].rstrip("/")
        if plan is None or number <= plan.after or route not in plan.routes:
            return None
        key = route + json.dumps(body, sort_keys=True)
        self._attempts[key] += 1
        rng = random.Random(f"{plan.seed}|{key}|{self._attempts[key]}")
        scoring = bool(body.get("logprobs"))  # echoed or first-token log-probs asked: the text is unused
        kinds = [k for k in plan.kinds if (k == "no_logprobs") == scoring or k not in ("no_logprobs", "empty")]
        if not kinds or self._in_a_row[key] >= plan.max_per_request or rng.random() >= plan.rate:
            self._in_a_row[key] = 0
            return None
        kind = rng.choice(kinds)
        self._in_a_row[key] += 1
        self.injected[kind] += 1
        return kind

    def _fault(self, kind: str, path: str, body: dict[str, Any], headers: dict[str, str], number: int):
        if kind.startswith("http_"):
            status = int(kind[5:])
            extra = {"Retry-After": "1", "retry-after-ms": str(self.retry_after_ms)} if status == 429 else {}
            return status, _error(f"injected {kind}", "server_error"), extra
        if kind == "connection":
            return 0, {}, {"x-fake-action": "connection"}
        if kind == "timeout":
            assert self.faults is not None
            time.sleep(self.faults.slow_seconds)  # the client has given up by now
            return self._answer(path, body, headers, number)
        status, payload, extra = self._answer(path, body, headers, number)
        if status != 200:
            return status, payload, extra
        if kind == "truncated":
            return status, payload, {**extra, "x-fake-action": "truncated"}
        if kind == "garbage":
            return 200, {"id": f"garbage-{number}", "object": "garbage", "data": [1, 2, 3]}, extra
        choice = payload["choices"][0]
        if kind == "empty":
            if "message" in choice:
                choice["message"]["content"] = ""
            else:
                choice["text"] = ""
        elif kind == "no_logprobs":
            choice["logprobs"] = None
        return status, payload, extra

    def _answer(self, path: str, body: dict[str, Any], headers: dict[str, str], number: int):
        if number <= self.fail_first:
            # Retry-After 0 asks for an immediate retry; the SDK only honours positive values, so
            # the (OpenAI's own) millisecond header sets the client's wait (short in most tests).
            return self.fail_status, _error("try again later", "server_error"), {
                "Retry-After": "0", "retry-after-ms": str(self.retry_after_ms)}
        if not self._authorized(headers):
            return 401, _error("Incorrect API key provided.", "invalid_request_error"), {}
        if self.reject is not None and self.reject(body):
            return 400, _error("request rejected by the test", "invalid_request_error"), {}
        route = path.split("?")[0].rstrip("/")
        if route not in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            return 404, _error(f"no route {path}", "not_found"), {}
        if body.get("model") not in self.models:
            return 404, _error(f"The model '{body.get('model')}' does not exist", "invalid_request_error"), {}
        if route == "/v1/embeddings":
            return 200, self._embeddings(body), {}
        first = self._alternatives(route, body)
        if isinstance(first, str):
            return 400, _error(first, "invalid_request_error"), {}
        text = first[0][0] if first else self.reply(body) if callable(self.reply) else self.reply
        usage = {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}
        if route == "/v1/chat/completions":
            choice_: dict[str, Any] = {"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": text}}
            if first:
                choice_["logprobs"] = {"refusal": None, "content": [{
                    "token": first[0][0], "logprob": first[0][1], "bytes": None,
                    "top_logprobs": [{"token": t, "logprob": v, "bytes": None} for t, v in first]}]}
            return 200, {"id": f"chatcmpl-{number}", "object": "chat.completion", "created": 0,
                         "model": body["model"], "usage": usage, "choices": [choice_]}, {}
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "text": text, "logprobs": None}
        if first:
            choice["logprobs"] = {"tokens": [first[0][0]], "token_logprobs": [first[0][1]],
                                  "text_offset": [len(body.get("prompt") or "")], "top_logprobs": [dict(first)]}
        if body.get("echo") and self.echo_logprobs:
            prompt = body.get("prompt") or ""
            choice["text"] = prompt + text
            if body.get("logprobs") is not None and self.echo_logprobs:
                tokens = fake_tokens(prompt)
                offsets, at = [], 0
                for token in tokens:
                    offsets.append(at)
                    at += len(token)
                values = [None] + [fake_logprob(t) for t in tokens[1:]]
                choice["logprobs"] = {"tokens": tokens, "token_logprobs": values, "text_offset": offsets,
                                      "top_logprobs": [None] + [{t: v} for t, v in zip(tokens[1:], values[1:])]}
        return 200, {"id": f"cmpl-{number}", "object": "text_completion", "created": 0,
                     "model": body["model"], "usage": usage, "choices": [choice]}, {}


    def _alternatives(self, route: str, body: dict[str, Any]) -> list[tuple[str, float]] | str | None:
        """The first token's alternatives a request asks for (most likely first), the 400's message
        for too many, or None (no log-probabilities asked, or none to give)."""
        if self.alternatives is None or body.get("echo"):
            return None
        if route == "/v1/chat/completions":
            top = body.get("top_logprobs") if body.get("logprobs") else None
        else:
            top = body.get("logprobs")
        if not top:
            return None
        if self.max_top_logprobs is not None and top > self.max_top_logprobs:
            return f"top_logprobs must be at most {self.max_top_logprobs}, got {top}"
        listed = self.alternatives(body) if callable(self.alternatives) else self.alternatives
        return sorted(listed, key=lambda a: -a[1])[:top] or None

    def _authorized(self, headers: dict[str, str]) -> bool:
        """With ``api_key`` set, only ``Authorization: Bearer API_KEY`` passes (as at OpenAI; HTTP
        Basic auth or a key in the URL is refused), on every route, ``GET /v1/models`` included."""
        if self.api_key is None:
            return True
        return {k.lower(): v for k, v in headers.items()}.get("authorization", "") == f"Bearer {self.api_key}"

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        rows = []
        for index, text in enumerate(texts):
            vector = fake_vector(text)
            if self.per_token_embeddings:  # rows around the vector, mean exactly the vector
                vector = [[x - 1.0 for x in vector], [x + 1.0 for x in vector]]
            rows.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(fake_tokens(t)) for t in texts)
        return {"object": "list", "model": body["model"], "data": rows[::-1],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


class _QuietServer(ThreadingHTTPServer):
    request_queue_size = 128  # listen backlog: 64 clients connecting at once must not wait for a SYN retry
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (a cancelled request) is normal here, not worth a traceback."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}
