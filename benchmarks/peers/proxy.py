"""A counting proxy in front of one or two OpenAI-compatible servers (stdlib only).

Every POST to ``/v1/chat/completions``, ``/v1/completions`` or ``/v1/embeddings`` is one *call*,
counted in the proxy's current phase with its tokens (the server's ``usage``) and its seconds, in
all and per model (the request's ``model`` field). Other paths (``GET /v1/models``...) are forwarded
to the first server and not counted.

Routes (``routes``: model name -> ``Route``): a request goes to the server of the model it names, so
a task model and an optimizer model on two servers are counted as one system's calls. A request
naming no served model is answered 404 (not counted, never forwarded). A route marked ``plain`` is
a base model (no chat template): a chat request for it is sent to the server's ``/v1/completions``
as plain text -- the messages' contents, roles dropped, joined by a blank line, then a newline
(``chat_as_completion``) -- and its answer returned in the chat shape (``completion_as_chat``). So
peers that only speak chat reach the base model as plain completion, with no template of ours
between (streaming is refused for such a route: 400). Completion requests pass unchanged. Without
routes every request goes to the one upstream, as before.

Phases:
- ``search``: charged. Once ``budget`` calls have been forwarded, each further call is *refused*:
  HTTP 429 with an OpenAI-style error body (``code: "budget_exhausted"``) and no ``Retry-After``;
  refused calls are counted apart and never reach the server.
- ``test``: the held-out evaluation; counted, never charged, never refused.
- ``auto``: for a process that searches and then tests in one go (promptgym's ``optimize``, which
  holds its own ``--budget``): calls are counted as ``search`` until the first call whose body
  contains one of the registered test inputs (strings of 8+ characters, JSON-escaped as they appear
  in the body); from then on every call is ``test`` (promptgym's held-out evaluation starts with the
  test split, and nothing after it reaches the search). Nothing is refused in this phase: a search
  call past ``budget`` is forwarded and counted as ``over_budget`` (the process's own cap should
  have stopped it), so a miscounted call cannot end the run.

Control (JSON over HTTP, on the same port, under ``/_proxy/``):
- ``POST /_proxy/reset``   ``{"label": str, "budget": int|null, "phase": str, "test_inputs": [str]}``
  zeroes the counters and sets the rest.
- ``POST /_proxy/phase``   ``{"phase": "search"|"test"|"auto"}``
- ``GET  /_proxy/stats``   the counters: per phase ``calls``, ``refused``, ``over_budget``,
  ``errors`` (non-2xx answers of the server), ``prompt_tokens``, ``completion_tokens``, ``seconds``
  and ``by_model`` (the same per model); plus ``params`` (how often each top-level request field was
  sent, e.g. ``max_tokens`` vs ``max_completion_tokens``) and ``first_call``/``last_call`` times.

Run: ``python proxy.py --upstream http://127.0.0.1:8080 --port 8081 [--budget N]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COUNTED = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings",
           "/chat/completions", "/completions", "/embeddings")
PHASES = ("search", "test", "auto")
MIN_TEST_INPUT = 8
# Fields of a chat request that mean the same in a completion request (llama.cpp's server reads them).
SAMPLING_FIELDS = ("model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "stop", "seed", "n",
                   "presence_penalty", "frequency_penalty", "repeat_penalty", "logit_bias", "user")


@dataclass(frozen=True)
class Route:
    """Where a model's requests go: its server's base (``http://127.0.0.1:P``), and whether it is a
    base model whose chat requests are sent as plain completion."""

    upstream: str
    plain: bool = False


def _message_text(content: Any) -> str:
    if isinstance(content, list):  # content parts: the text ones, in order
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def chat_as_completion(req: dict[str, Any]) -> dict[str, Any]:
    """A chat request as the completion request sent to a base model: the messages' contents (roles
    dropped) joined by a blank line, then a newline for the answer to start on; the sampling fields
    kept. No ``max_tokens`` means no limit in a chat request, so it is sent as null (a completion
    request would otherwise stop at the server's default of 16)."""
    prompt = "\n\n".join(_message_text(m.get("content")) for m in req.get("messages") or []) + "\n"
    out = {k: req[k] for k in SAMPLING_FIELDS if k in req}
    out["prompt"] = prompt
    out["max_tokens"] = req.get("max_tokens", req.get("max_completion_tokens"))
    return out


def completion_as_chat(payload: dict[str, Any]) -> dict[str, Any]:
    """A completion answer in the shape of a chat answer (one assistant message per choice)."""
    choices = [{"index": c.get("index", i), "message": {"role": "assistant", "content": c.get("text") or ""},
                "finish_reason": c.get("finish_reason"), "logprobs": None}
               for i, c in enumerate(payload.get("choices") or [])]
    return {"id": payload.get("id", ""), "object": "chat.completion", "created": payload.get("created", int(time.time())),
            "model": payload.get("model"), "choices": choices, "usage": payload.get("usage")}


def _empty_phase() -> dict[str, Any]:
    return {"calls": 0, "refused": 0, "over_budget": 0, "errors": 0, "prompt_tokens": 0,
            "completion_tokens": 0, "seconds": 0.0, "by_model": {}}


def _model_entry(phase: dict[str, Any], model: str) -> dict[str, Any]:
    return phase["by_model"].setdefault(model, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                                "seconds": 0.0})


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

    def admit(self, body: bytes, model: str = "") -> tuple[str, bool]:
        """The phase this call is counted in, and whether it may go to the server. An admitted
        search call takes its place in the budget at once (so concurrent calls cannot overshoot)."""
        with self.lock:
            phase, enforce = self.phase, True
            if phase == "auto":
                text = body.decode("utf-8", "replace")
                if any(k in text for k in self.test_keys):
                    self.phase = phase = "test"  # the held-out evaluation has begun: test from now on
                else:
                    phase, enforce = "search", False
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
            over = phase == "search" and self.budget is not None and p["calls"] >= self.budget
            if over and enforce:
                p["refused"] += 1
                return phase, False
            p["calls"] += 1
            p["over_budget"] += int(over)
            _model_entry(p, model)["calls"] += 1
            return phase, True

    def record(self, phase: str, status: int, payload: bytes, seconds: float, model: str = "") -> None:
        usage: dict[str, Any] = {}
        try:
            data = json.loads(payload)
            usage = (data.get("usage") or {}) if isinstance(data, dict) else {}
        except ValueError:
            pass
        with self.lock:
            p = self.phases[phase]
            m = _model_entry(p, model)
            p["seconds"] += seconds
            m["seconds"] += seconds
            if not 200 <= status < 300:
                p["errors"] += 1
            for field in ("prompt_tokens", "completion_tokens"):
                n = int(usage.get(field) or 0)
                p[field] += n
                m[field] += n
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


def _error(message: str, kind: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "code": kind, "param": None}}).encode()


def make_handler(counter: Counter, upstream: str, timeout: float = 3600.0,
                 routes: dict[str, Route] | None = None) -> type[BaseHTTPRequestHandler]:
    default = Route(upstream)

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

        def _route(self, counted: bool, req: dict[str, Any]) -> tuple[Route | None, str]:
            """The route of a counted request (None: no served model is named) and its model name."""
            model = str(req.get("model") or "")
            if not routes or not counted:
                return default, model
            return routes.get(model), model

        def _upstream(self, route: Route, method: str, path: str, body: bytes) -> tuple[int, bytes, str]:
            up = urllib.parse.urlsplit(route.upstream)
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("host", "content-length", "connection", "accept-encoding")}
            conn = http.client.HTTPConnection(up.hostname, up.port or 80, timeout=timeout)
            try:
                conn.request(method, path, body=body or None, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read(), resp.getheader("Content-Type", "application/json")
            except OSError as e:
                return 502, _error(f"proxy: upstream failed: {e}", "upstream_error"), "application/json"
            finally:
                conn.close()

        def _forward(self, method: str, body: bytes) -> None:
            path = self.path.split("?")[0]
            if path.startswith("/_proxy/"):
                self._control(method, body)
                return
            counted = method == "POST" and path.rstrip("/").endswith(COUNTED)
            try:
                req = json.loads(body or b"{}") if counted else {}
            except ValueError:
                req = {}
            req = req if isinstance(req, dict) else {}
            route, model = self._route(counted, req)
            if route is None:
                self._send(404, _error(f"proxy: no server for model {model!r} (served: {', '.join(routes or {})})",
                                       "model_not_found"))
                return
            as_plain = route.plain and path.rstrip("/").endswith("chat/completions")
            if as_plain and req.get("stream"):
                self._send(400, _error("proxy: streaming is not supported for a base model's chat requests",
                                       "invalid_request_error"))
                return
            phase = None
            if counted:
                phase, allowed = counter.admit(body, model)
                if not allowed:
                    self._send(429, refusal(counter))
                    return
            start = time.monotonic()
            if as_plain:
                sent = json.dumps(chat_as_completion(req)).encode()
                status, payload, ctype = self._upstream(route, method, self.path.replace("chat/completions", "completions"), sent)
                if 200 <= status < 300:
                    try:
                        payload = json.dumps(completion_as_chat(json.loads(payload))).encode()
                    except ValueError:
                        pass  # not JSON: passed on as the server sent it
            else:
                status, payload, ctype = self._upstream(route, method, self.path, body)
            if counted and phase is not None:
                counter.record(phase, status, payload, time.monotonic() - start, model)
            self._send(status, payload, ctype)

        def do_GET(self) -> None:  # noqa: N802
            self._forward("GET", b"")

        def do_POST(self) -> None:  # noqa: N802
            self._forward("POST", self._body())

    return Handler


def serve(upstream: str, port: int = 0, budget: int | None = None, host: str = "127.0.0.1",
          timeout: float = 3600.0, routes: dict[str, Route] | None = None) -> tuple[ThreadingHTTPServer, Counter]:
    """Start the proxy in a daemon thread; returns the server (``server_address[1]`` is the port)
    and its counter. ``upstream`` gets the uncounted requests (and every request without ``routes``).
    Stop with ``server.shutdown()``."""
    counter = Counter(budget=budget)
    server = ThreadingHTTPServer((host, port), make_handler(counter, upstream, timeout, routes))
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
