"""A process that used the embedded model exits quietly (issue 26): no "Exception ignored in
Llama.__del__" at interpreter exit and no llama.cpp notes on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

SCRIPT = textwrap.dedent("""
    import atexit, sys, weakref

    models = []

    def still_alive():  # registered first, so it runs after promptgym's own exit hook
        alive = sum(ref() is not None for ref in models)
        if alive:
            sys.stderr.write(f"{alive} llama.cpp models still alive after the exit hooks: left to interpreter teardown\\n")

    atexit.register(still_alive)

    from promptgym.models.base import EmbeddingRequest, GenerationRequest, ScoreRequest
    from promptgym.models.factory import make_backend

    backend = make_backend("embedded")
    out = []
    backend.generate([GenerationRequest(messages=(("user", "Say hi."),), max_tokens=3)], lambda i, r: out.append(r))
    backend.score([ScoreRequest(text="The film was great. Sentiment:", continuations=(" good", " bad"))],
                  lambda i, r: out.append(r))
    backend.embed([EmbeddingRequest(text="hello")], lambda i, r: out.append(r))  # a second llama.cpp context
    models += [weakref.ref(backend.llm), weakref.ref(backend._embedding_llm)]
    print(len(out))
""")


def test_a_process_that_used_the_embedded_model_exits_with_an_empty_stderr(tmp_path):
    env = dict(os.environ, PROMPTGYM_HOME=str(tmp_path / "home"), PROMPTGYM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3"
    assert proc.stderr == ""
