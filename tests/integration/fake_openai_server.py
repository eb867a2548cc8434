"""A small OpenAI-protocol server on 127.0.0.1 (stdlib only) for testing the HTTP path for real.

It answers ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/models`` with canned text, can fail
the first N requests with a status (429, 503, ...) and a ``retry-after-ms`` wait, checks the API key and the
model name like a real server (401 / 404 with an OpenAI-shaped error body), rejects the requests a
test picks (400), records every request it
received with its arrival time and measures the largest number of requests in flight at once.

``/v1/completions`` with ``echo=True`` and ``logprobs`` echoes the prompt split into word tokens
(``"a b"`` -> ``"a"``, ``" b"``) whose log-probability is ``-len(token) / 10``, the first one ``None``,
so a client's option scores can be checked exactly (see ``fake_logprob``).

``/v1/embeddings`` answers ``fake_vector(text)`` per input (or, with ``per_token_embeddings``, one
row per word whose mean is that vector, as llama.cpp without pooling does), in reversed order with
their ``index`` (clients must sort), and counts one prompt token per word.
"""

from __future__ import annotations

import json
import re
import threading
import time
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


@dataclass
class Received:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival: gaps between retries are measured here, server-side


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
    received: list[Received] = field(default_factory=list)
    max_in_flight: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

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

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
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
                status, payload, headers = owner._handle(self.path, body, dict(self.headers.items()))
                self._send(status, payload, headers)

            def _error(self, status: int, message: str, kind: str) -> None:
                self._send(status, {"error": {"message": message, "type": kind, "code": status}})

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
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
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def requests_to(self, route: str) -> list[Received]:
        return [r for r in self.received if r.path.endswith(route)]

    # -- the protocol ------------------------------------------------------------------------------

    def _handle(self, path: str, body: dict[str, Any], headers: dict[str, str]):
        with self._lock:
            self.received.append(Received(path, body, {k.lower(): v for k, v in headers.items()},
                                          time.monotonic()))
            number = len(self.received)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            return self._answer(path, body, headers, number)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer(self, path: str, body: dict[str, Any], headers: dict[str, str], number: int):
        if number <= self.fail_first:
            # Retry-After 0 asks for an immediate retry; the SDK only honours positive values, so
            # the (OpenAI's own) millisecond header sets the client's wait (short in most tests).
            return self.fail_status, _error("try again later", "server_error"), {
                "Retry-After": "0", "retry-after-ms": str(self.retry_after_ms)}
        if self.api_key is not None:
            auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
            if auth != f"Bearer {self.api_key}":
                return 401, _error("Incorrect API key provided.", "invalid_request_error"), {}
        if self.reject is not None and self.reject(body):
            return 400, _error("request rejected by the test", "invalid_request_error"), {}
        route = path.rstrip("/")
        if route not in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            return 404, _error(f"no route {path}", "not_found"), {}
        if body.get("model") not in self.models:
            return 404, _error(f"The model '{body.get('model')}' does not exist", "invalid_request_error"), {}
        if route == "/v1/embeddings":
            return 200, self._embeddings(body), {}
        text = self.reply(body) if callable(self.reply) else self.reply
        usage = {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}
        if route == "/v1/chat/completions":
            return 200, {"id": f"chatcmpl-{number}", "object": "chat.completion", "created": 0,
                         "model": body["model"], "usage": usage,
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": text}}]}, {}
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "text": text, "logprobs": None}
        if body.get("echo"):
            prompt = body.get("prompt") or ""
            choice["text"] = prompt + text
            if body.get("logprobs") is not None:
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
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (a cancelled request) is normal here, not worth a traceback."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}
