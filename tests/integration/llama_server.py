"""``python -m llama_cpp.server`` on the embedded GGUF, on a free port of 127.0.0.1, for tests that
need the real model behind the OpenAI protocol. The server is stopped when the context ends."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from typing import Iterator

import pytest

ALIAS = "smollm2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def llama_cpp_server(embedding: bool = False, logits_all: bool = True) -> Iterator[str]:
    """Yields the base URL (``.../v1``); the model is served as ``ALIAS``. ``embedding`` turns on
    ``/v1/embeddings`` (one vector per token: the model has no pooling; generation still works).
    ``logits_all=False``: a server that answers a request for log-probabilities with a 500."""
    pytest.importorskip("llama_cpp.server")
    from promptgym.models.llama_cpp_backend import embedded_model_path

    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model_path()),
           "--model_alias", ALIAS, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
           "--n_threads", os.environ.get("PROMPTGYM_THREADS") or "2", "--verbose", "False",
           "--interrupt_requests", "False", "--embedding", str(embedding), "--logits_all", str(logits_all)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not answer /v1/models within 90s")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
