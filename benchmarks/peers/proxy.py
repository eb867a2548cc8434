"""A counting proxy in front of an OpenAI-compatible server (stdlib only).

Every POST to ``/v1/chat/completions``, ``/v1/completions`` or ``/v1/embeddings`` is one *call*,
counted in the proxy's current phase with its tokens (the server's ``usage``) and its seconds.
Other paths (``GET /v1/models``...) are forwarded and not counted.

Phases:
- ``search``: charged. Once ``budget`` calls have been forwarded, each further call is *refused*:
  HTTP 429 with an OpenAI-style error body (``code: "budget_exhausted"``) and no ``Retry-After``;
  refused calls are counted apart and never reach the server.
- ``test``: the held-out evaluation; counted, never charged, never refused.
- ``auto``: for a process that searches and then tests in one go (promptgym's ``optimize``): a call
  whose body contains one of the registered test inputs (strings of 8+ characters, JSON-escaped as
  they appear in the body) counts as ``test``, any other as ``search`` (charged, refused past the
  budget). The split is disjoint, and an optimizer only ever shows the model train/dev examples, so
  the match is exact in practice.

Control (JSON over HTTP, on the same port, under ``/_proxy/``):
- ``POST /_proxy/reset``   ``{"label": str, "budget": int|null, "phase": str, "test_inputs": [str]}``
  zeroes the counters and sets the rest.
- ``POST /_proxy/phase``   ``{"phase": "search"|"test"|"auto"}``
- ``GET  /_proxy/stats``   the counters: per phase ``calls``, ``refused``, ``errors`` (non-2xx
  answers of the server), ``prompt_tokens``, ``completion_tokens``, ``seconds``; plus ``params``
  (how often each top-level request field was sent, e.g. ``max_tokens`` vs
  ``max_completion_tokens``) and ``first_call``/``last_call`` times.

Run: ``python proxy.py --upstream http://127.0.0.1:8080 --port 8081 [--budget N]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COUNTED = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings",
           "/chat/completions", "/completions", "/embeddings")
PHASES = ("search", "test", "auto")
MIN_TEST_INPUT = 8


def _empty_phase() -> dict[str, Any]:
    return {"calls": 0, "refused": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0,
            "seconds": 0.0}


class Counter:
    """The proxy's state; every method is thread-safe."""

    def __init__(self, budget: int | None = None, phase: str = "search", label: str = "") -> None:
        self.lock = threading.Lock()
        self.reset(label=label, budget=budget, phase=phase)

    def reset(self, label: str = "", budget: int | None = None, phase: str = "search",
              test_inputs: list[str] | None = None) -> None:
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}")
        with self.lock:
            self.label = label
            self.budget = budget
            self.phase = phase
            self.test_keys = sorted({json.dumps(t)[1:-1] for t in (test_inputs or [])
                                     if len(t.strip()) >= MIN_TEST_INPUT}, key=len, reverse=True)
            self.phases = {"search": _empty_phase(), "test": _empty_phase()}
            self.params: dict[str, int] = {}
            self.first_call: float | None = None
            self.last_call: float | None = None

    def set_phase(self, phase: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}")
        with self.lock:
            self.phase = phase

    def admit(self, body: bytes) -> tuple[str, bool]:
        """The phase this call is counted in, and whether it may go to the server. An admitted
        search call takes its place in the budget at once (so concurrent calls cannot overshoot)."""
        with self.lock:
            phase = self.phase
            if phase == "auto":
                text = body.decode("utf-8", "replace")
                phase = "test" if any(k in text for k in self.test_keys) else "search"
            try:
                req = json.loads(body or b"{}")
                for key in req if isinstance(req, dict) else ():
                    self.params[key] = self.params.get(key, 0) + 1
            except ValueError:
                pass
            now = time.time()
            self.first_call = self.first_call or now
            self.last_call = now
            p = self.phases[phase]
            if phase == "search" and self.budget is not None and p["calls"] >= self.budget:
                p["refused"] += 1
                return phase, False
            p["calls"] += 1
            return phase, True

    def record(self, phase: str, status: int, payload: bytes, seconds: float) -> None:
        usage: dict[str, Any] = {}
        try:
            data = json.loads(payload)
            usage = (data.get("usage") or {}) if isinstance(data, dict) else {}
        except ValueError:
            pass
        with self.lock:
            p = self.phases[phase]
            p["seconds"] += seconds
            if not 200 <= status < 300:
                p["errors"] += 1
            p["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
            p["completion_tokens"] += int(usage.get("completion_tokens") or 0)
            self.last_call = time.time()

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"label": self.label, "budget": self.budget, "phase": self.phase,
                    "phases": json.loads(json.dumps(self.phases)), "params": dict(self.params),
                    "first_call": self.first_call, "last_call": self.last_call}


def refusal(counter: Counter) -> bytes:
    return json.dumps({"error": {
        "message": f"call budget exhausted: {counter.budget} calls allowed during the search "
                   f"(counting proxy of benchmarks/peers)",
        "type": "budget_exhausted", "code": "budget_exhausted", "param": None}}).encode()


def make_handler(counter: Counter, upstream: str, timeout: float = 3600.0) -> type[BaseHTTPRequestHandler]:
    up = urllib.parse.urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

        def _send(self, status: int, body: bytes, ctype: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its own timeout); the call was counted all the same

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _control(self, method: str, body: bytes) -> None:
            path = self.path.split("?")[0]
            try:
                data = json.loads(body or b"{}") if method == "POST" else {}
                if path == "/_proxy/stats":
                    pass
                elif path == "/_proxy/reset" and method == "POST":
                    counter.reset(label=data.get("label", ""), budget=data.get("budget"),
                                  phase=data.get("phase", "search"), test_inputs=data.get("test_inputs"))
                elif path == "/_proxy/phase" and method == "POST":
                    counter.set_phase(data["phase"])
                else:
                    self._send(404, b'{"error": "unknown control path"}')
                    return
            except (ValueError, KeyError) as e:
                self._send(400, json.dumps({"error": str(e)}).encode())
                return
            self._send(200, json.dumps(counter.stats()).encode())

        def _forward(self, method: str, body: bytes) -> None:
            path = self.path.split("?")[0]
            if path.startswith("/_proxy/"):
                self._control(method, body)
                return
            counted = method == "POST" and path.rstrip("/").endswith(COUNTED)
            phase = None
            if counted:
                phase, allowed = counter.admit(body)
                if not allowed:
                    self._send(429, refusal(counter))
                    return
            start = time.monotonic()
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("host", "content-length", "connection", "accept-encoding")}
            conn = http.client.HTTPConnection(up.hostname, up.port or 80, timeout=timeout)
            try:
                conn.request(method, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                status = resp.status
                ctype = resp.getheader("Content-Type", "application/json")
            except OSError as e:
                payload = json.dumps({"error": {"message": f"proxy: upstream failed: {e}",
                                                "type": "upstream_error"}}).encode()
                status, ctype = 502, "application/json"
            finally:
                conn.close()
            if counted and phase is not None:
                counter.record(phase, status, payload, time.monotonic() - start)
            self._send(status, payload, ctype)

        def do_GET(self) -> None:  # noqa: N802
            self._forward("GET", b"")

        def do_POST(self) -> None:  # noqa: N802
            self._forward("POST", self._body())

    return Handler


def serve(upstream: str, port: int = 0, budget: int | None = None, host: str = "127.0.0.1",
          timeout: float = 3600.0) -> tuple[ThreadingHTTPServer, Counter]:
    """Start the proxy in a daemon thread; returns the server (``server_address[1]`` is the port)
    and its counter. Stop with ``server.shutdown()``."""
    counter = Counter(budget=budget)
    server = ThreadingHTTPServer((host, port), make_handler(counter, upstream, timeout))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="peers-proxy", daemon=True).start()
    return server, counter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="base of the server, e.g. http://127.0.0.1:8080")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--budget", type=int, default=None)
    args = ap.parse_args()
    server, _ = serve(args.upstream, args.port, args.budget)
    print(f"proxy on http://127.0.0.1:{server.server_address[1]} -> {args.upstream}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
