"""Issue 26, item 4: what can be checked before a run starts is checked before its run row exists.

A dead model endpoint, a response cache that cannot be opened and a missing sandbox (bubblewrap, for
a reward that runs code) each used to leave a ``failed`` run behind: the endpoint and the cache were
first touched inside the run, and the sandbox only when the first answers were scored, after 8 model
calls. Now each is one line before anything is stored, like bad data; on resume, before the run is
claimed, so it stays resumable.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptgym.cli import main
from promptgym.store.runs import RunStore

from support import sentiment_reply, write_reviews, write_sentiment

try:  # tests/integration may or may not be a package
    from integration.fake_openai_server import FakeOpenAIServer
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).parent / "integration"))
    from fake_openai_server import FakeOpenAIServer  # type: ignore[no-redef]

SCRIPTED = ["--task-model", "scripted", "--optimizer-model", "scripted"]


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _one_line_error(result, *contains: str) -> str:
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception  # not a traceback
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("promptgym: error: "), result.stderr
    for text in contains:
        assert text in lines[0], lines[0]
    return lines[0]


def _runs() -> list[dict]:
    result = _cli("runs", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _dead_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_dead_endpoint_is_one_line_and_no_run_row(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    model = f"openai:fake-model@http://127.0.0.1:{_dead_port()}/v1"
    result = _cli("optimize", "--dataset", write_reviews(tmp_path, 40), "--task-model", model, "--optimizer-model",
                  model, "--budget", "20", "--train-size", "10", "--test-size", "10")
    _one_line_error(result, "127.0.0.1")
    assert _runs() == []


@pytest.mark.parametrize("cache", ["sqlite:////dev/null/not-a-folder/cache.sqlite", "postgresql://nobody@127.0.0.1:1/x"])
def test_a_cache_that_cannot_be_opened_is_one_line_and_no_run_row(tmp_path, monkeypatch, cache):
    if cache.startswith("postgresql"):
        pytest.importorskip("psycopg")
    monkeypatch.setenv("PROMPTGYM_CACHE", cache)
    result = _cli("optimize", "--dataset", write_reviews(tmp_path, 40), *SCRIPTED, "--budget", "20",
                  "--train-size", "10", "--test-size", "10")
    _one_line_error(result, cache.split("/")[0])
    assert _runs() == []


def test_a_missing_bubblewrap_is_one_line_before_any_model_call(monkeypatch):
    from promptgym import sandbox
    from promptgym.models.scripted import ScriptedBackend

    calls: list[int] = []
    real_generate = ScriptedBackend.generate

    def counted(self, requests, on_result):
        calls.append(len(requests))
        return real_generate(self, requests, on_result)

    monkeypatch.setattr(ScriptedBackend, "generate", counted)
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)  # PATH and /usr/bin without it
    result = _cli("optimize", "--dataset", "example:python-functions", *SCRIPTED, "--budget", "20",
                  "--train-size", "6", "--test-size", "4", "--dev-size", "0")
    _one_line_error(result, "bubblewrap (bwrap)", "apt-get install bubblewrap")
    assert _runs() == [] and calls == []


def test_resume_with_a_dead_endpoint_leaves_the_run_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    data = write_sentiment(tmp_path)
    with FakeOpenAIServer(reply=sentiment_reply) as server:
        model = f"openai:fake-model@{server.base_url}"
        first = _cli("optimize", "--dataset", str(data), "--task-model", model, "--optimizer-model", model,
                     "--budget", "12", "--train-size", "6", "--test-size", "6", "--dev-size", "0", "--json", "--quiet")
        assert first.exit_code == 0, first.stderr
    run_id = json.loads(first.stdout.strip().splitlines()[-1])["run_id"]
    store = RunStore(f"sqlite:///{tmp_path / 'home' / 'runs.sqlite'}")
    store.set_status(run_id, "interrupted")  # as if killed; the server is gone now
    resumed = _cli("resume", run_id)
    _one_line_error(resumed, "127.0.0.1")
    run = store.get_run(run_id)
    assert run["status"] == "interrupted" and run["owner_token"] is None
