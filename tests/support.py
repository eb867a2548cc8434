"""Test helpers importable from any test module (``from support import make_examples``)."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

from promptgym.data.dataset import Dataset, Example
from promptgym.models.scripted import ScriptedBackend, request_text
from promptgym.optimizers.base import Recorder
from promptgym.testing import LABELS, RecordingBackend, make_examples  # noqa: F401  (re-exported)

TINY_LABELS = ("positive", "negative")
_TINY_REVIEWS = [
    ("The staff were friendly and the room was spotless.", "positive"),
    ("Cold food, rude waiter, never again.", "negative"),
    ("A lovely quiet place with a great view.", "positive"),
    ("The bed was broken and nobody helped us.", "negative"),
    ("Best breakfast we had on the whole trip.", "positive"),
    ("Dirty bathroom and a smell of smoke everywhere.", "negative"),
    ("The doctor listened carefully and explained everything.", "positive"),
    ("We waited three hours and the nurse shouted at us.", "negative"),
    ("Great value, helpful people, we will come back.", "positive"),
    ("Overpriced and noisy, the worst hotel in town.", "negative"),
    ("Delicious pasta and a very kind owner.", "positive"),
    ("The lesson was boring and the teacher was late.", "negative"),
]


# Sixteen plainly polar reviews (label words a small model gets right), for runs over HTTP.
SENTIMENT = [
    ("An absolute delight from start to finish.", "positive"), ("I loved every minute of it.", "positive"),
    ("The staff were warm and helpful.", "positive"), ("Best purchase I have made this year.", "positive"),
    ("Fresh, tasty and fairly priced.", "positive"), ("It works perfectly and looks great.", "positive"),
    ("A wonderful, moving story.", "positive"), ("I would happily come back again.", "positive"),
    ("It broke after two days.", "negative"), ("The worst service I have ever had.", "negative"),
    ("Cold food and a rude waiter.", "negative"), ("A boring, pointless film.", "negative"),
    ("I want my money back.", "negative"), ("The screen cracked on the first drop.", "negative"),
    ("Slow, noisy and overpriced.", "negative"), ("Never buying from them again.", "negative"),
]


def _h(text: str) -> int:
    import hashlib

    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def sentiment_reply(body: dict) -> str:
    """A fake server's answer, deterministic in the request (the same on every server of a pool):
    a label for a task request over ``SENTIMENT``, wrong on a third of them so that prompts differ,
    or an instruction for an optimizer's request."""
    import json

    text = json.dumps(body.get("messages") or body.get("prompt"), sort_keys=True)
    if "instruction" in text.lower():  # the optimizer's request
        return f"Decide whether the review is positive or negative (variant {_h(json.dumps(body, sort_keys=True)) % 97})."
    truth = next((y for t, y in SENTIMENT if t in text), "positive")
    wrong = "negative" if truth == "positive" else "positive"
    return wrong if _h(text) % 3 == 0 else truth


def write_sentiment(folder) -> "Path":
    """``SENTIMENT`` as a JSONL file in ``folder``; its path."""
    import json
    from pathlib import Path

    path = Path(folder) / "reviews.jsonl"
    path.write_text("".join(json.dumps({"input": t, "target": y, "choices": ["positive", "negative"]}) + "\n"
                            for t, y in SENTIMENT))
    return path


def tiny_sentiment() -> Dataset:
    """Twelve short, plainly polar reviews, for runs on a real model."""
    return Dataset("tiny-sentiment", [Example(f"t{i}", text, (label,), TINY_LABELS)
                                      for i, (text, label) in enumerate(_TINY_REVIEWS)],
                   description="Is the opinion positive or negative?")


class Recording(Recorder):
    """Records candidates (id, instruction, parents, operation) and scores (id, split, example ids)."""

    def __init__(self):
        self.candidates: list[tuple[str, str, tuple[str, ...], str]] = []
        self.scored: list[tuple[str, str, tuple[str, ...]]] = []

    def candidate(self, prompt, parents, operation):
        self.candidates.append((prompt.id, prompt.instruction, tuple(parents), operation))

    def score(self, prompt, split, result):
        self.scored.append((prompt.id, split, tuple(e.id for e in result.examples)))


REVIEW_LABELS = ("positive", "negative", "neutral", "ambivalent")


def write_reviews(folder, n: int, name: str = "reviews.jsonl") -> str:
    """A JSONL file of ``n`` labelled hotel reviews (labels in turn) in ``folder``; its path."""
    import json

    path = folder / name
    path.write_text("".join(json.dumps({"input": f"Review {i}: the stay was {REVIEW_LABELS[i % 4]}.",
                                        "target": REVIEW_LABELS[i % 4]}) + "\n" for i in range(n)))
    return str(path)


class LoopbackServer:
    """A real HTTP server on a free 127.0.0.1 port, serving from a thread until ``close()``: each
    request (GET, HEAD or POST) is handed to ``respond`` as its ``BaseHTTPRequestHandler``."""

    def __init__(self, respond: Callable[[BaseHTTPRequestHandler], None]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                respond(self)

            do_HEAD = do_POST = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.release = threading.Event()  # set on close: a reply held back ("hang") ends
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        if not self.release.is_set():
            self.release.set()
            self.httpd.shutdown()
            self.httpd.server_close()
            self._thread.join()


class FileServer(LoopbackServer):
    """A LoopbackServer that serves ``files``: a path under ``root`` -> its reply. A reply is a body
    (bytes, sent with its Content-Length); ``(body, "unsized")`` (no Content-Length: the close ends
    it); ``(body, "partial")`` (announce the body, send half, close); ``"close"`` (close without
    replying); ``"hang"`` (no reply until the server closes); an int (that HTTP status); or a list of
    those, one per request, the last one repeating. Any other path is a 404.

    ``requests`` keeps each request's path, ``hits`` counts them by path under ``root`` and ``lines``
    keeps each request line (a proxied one names the whole URL). ``base`` is the URL of ``root``.
    """

    def __init__(self, files: dict | None = None, root: str = "") -> None:
        self.files = dict(files or {})
        self.root = root.rstrip("/")
        self.requests: list[str] = []
        self.hits: Counter[str] = Counter()
        self.lines: list[str] = []
        super().__init__(self._respond)
        self.base = self.url + self.root

    def _respond(self, h: BaseHTTPRequestHandler) -> None:
        self.requests.append(h.path)
        self.lines.append(h.requestline)
        path = urlsplit(h.path).path
        rel = path[len(self.root) + 1:] if self.root and path.startswith(self.root + "/") else path
        self.hits[rel] += 1
        reply = self.files.get(rel, 404)
        if isinstance(reply, list):
            reply = reply[min(self.hits[rel], len(reply)) - 1]
        body, how = reply if isinstance(reply, tuple) else (reply, "sized")
        if body == "close":
            h.close_connection = True
        elif body == "hang":
            self.release.wait(10)
            h.close_connection = True
        elif isinstance(body, int):
            h.send_error(body)
        else:
            h.send_response(200)
            if how != "unsized":
                h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2] if how == "partial" else body)
            h.close_connection = how != "sized"


def noisy_scripted() -> dict[str, ScriptedBackend]:
    """``backends=`` for runs on the scripted model with option scores that depend on the whole request:
    each prompt answers each example its own way (about 1 in 4 right), so prompts disagree on many dev
    examples."""
    import hashlib

    def logprob(prompt: str, option: str) -> float:
        return -(int(hashlib.sha256(f"{prompt}|{option}".encode()).hexdigest()[:6], 16) % 1000) / 200

    return {"scripted": ScriptedBackend(option_logprob=logprob)}


def one_line_data_error(spec: str, **fields) -> str:
    """The DataError ``load_dataset(spec, **fields)`` raises, checked to be one line."""
    import pytest

    from promptgym.data.loaders import load_dataset
    from promptgym.errors import DataError

    with pytest.raises(DataError) as info:
        load_dataset(spec, **fields)
    message = str(info.value)
    assert "\n" not in message
    return message


ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str) -> ModuleType:
    """A script of the checkout that is not a package module (``benchmarks/deliver.py``), loaded by
    its path so its functions can be tested."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def judge_grade(request) -> str:
    """A scripted rubric judge that knows the truth: 5 for an answer starting with "Kindly", else 1."""
    given = re.search(r"<<<ANSWER>>>\n(.*?)\n<<<END ANSWER>>>", request_text(request), re.S).group(1)
    return " 5" if given.startswith("Kindly") else " 1"


def formal_proposal(request) -> str:
    """A scripted optimizer's instruction per request: formal in about half of them."""
    digest = int(hashlib.sha256(repr(request).encode()).hexdigest()[:8], 16)
    return f"Rewrite the input{' in a formal register' if digest % 2 else ''}, take {digest % 1000}."
