"""Secrets (issue 13, item 5): an API key, in OPENAI_API_KEY or written into the base URL, never
reaches the run store, the cache, the CLI's output (tables, --json, errors), or a stored config."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("openai")

from promptgym.cli import main  # noqa: E402
from promptgym.models.factory import make_backend  # noqa: E402
from promptgym.secrets import redact_spec, redact_url, scrub  # noqa: E402

try:  # tests/integration may or may not be a package
    from integration.fake_openai_server import FakeOpenAIServer
except ImportError:  # pragma: no cover
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "integration"))
    from fake_openai_server import FakeOpenAIServer  # type: ignore[no-redef]

ENV_KEY = "sk-envSECRET-7f3a9c2e51"
URL_KEY = "urlSECRET-b81d44e09c"
LABELS = ("positive", "negative")


@pytest.mark.parametrize("url, shown", [
    ("http://user:KEY1234@host:8000/v1", "http://user:***@host:8000/v1"),
    ("https://KEY1234@host/v1", "https://***@host/v1"),
    ("http://host/v1?api_key=KEY1234&x=1", "http://host/v1?api_key=***&x=1"),
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown
    assert "KEY1234" not in scrub(f"error at {url}: nope")


def test_redact_spec_and_resume_without_the_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    spec = "openai:m@http://user:KEY9876@127.0.0.1:1/v1"
    assert redact_spec(spec) == "openai:m@http://user:***@127.0.0.1:1/v1"
    assert redact_spec("scripted") == "scripted"
    backend = make_backend(redact_spec(spec))  # a stored spec: the key's place is dropped, not sent as '***'
    assert backend.endpoints[0].url == "http://127.0.0.1:1/v1"
    live = make_backend(spec)
    assert "KEY9876" not in live.identity + live.endpoint + live._where()
    assert live.endpoints[0].url == "http://127.0.0.1:1/v1"  # the SDK gets the URL without the key ...
    assert live.endpoints[0].api_key == "KEY9876"  # ... and the key as its api_key, in memory only


def _dataset(tmp_path: Path) -> str:
    path = tmp_path / "reviews.jsonl"
    with path.open("w") as handle:
        for i in range(24):
            handle.write(json.dumps({"input": f"Review {i}: it was {LABELS[i % 2]}.", "target": LABELS[i % 2]}) + "\n")
    return str(path)


def _all_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file())


def test_no_key_in_any_artefact(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("PROMPTGYM_HOME", str(home))
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    outputs: list[str] = []

    def run(*args: str):
        result = CliRunner().invoke(main, list(args))
        outputs.append(result.stdout + result.stderr)
        return result

    with FakeOpenAIServer(reply="positive") as server:
        host = server.base_url.split("://", 1)[1]
        spec = f"openai:fake-model@http://user:{URL_KEY}@{host}"
        base = ["optimize", "--dataset", _dataset(tmp_path), "--task-model", spec, "--optimizer-model", spec,
                "--train-size", "6", "--test-size", "6", "--dev-size", "0", "--budget", "20", "--quiet"]
        first = run(*base, "--json")
        assert first.exit_code == 0, first.stderr
        summary = json.loads(first.stdout.strip().splitlines()[-1])
        assert summary["task_model"] == f"openai:http://user:***@{host}:fake-model"
        second = run(*base, "--method", "grips")  # the rich table
        assert second.exit_code == 0, second.stderr
        run_id = summary["run_id"]
        for args in (("runs",), ("runs", "--json"), ("show", run_id), ("resume", run_id, "--json"),
                     ("predict", run_id, "--input", "Lovely stay.", "--json")):
            assert run(*args).exit_code == 0, outputs[-1]
        # the key really went over the wire, as the URL's key (it wins over OPENAI_API_KEY)
        auth = {r.headers.get("authorization", "") for r in server.received + server.gets}
        assert auth == {f"Bearer {URL_KEY}"}
    # errors: a dead endpoint and a rejected key, both with the key in the URL
    dead = run("optimize", "--dataset", _dataset(tmp_path), "--task-model",
               f"openai:fake-model@http://user:{URL_KEY}@127.0.0.1:9/v1", "--optimizer-model", "scripted",
               "--train-size", "6", "--test-size", "6", "--dev-size", "0", "--budget", "5", "--quiet")
    assert dead.exit_code != 0 and "user:***@127.0.0.1:9" in dead.stderr
    with FakeOpenAIServer(api_key="the-right-one") as strict:
        host = strict.base_url.split("://", 1)[1]
        rejected = run("optimize", "--dataset", _dataset(tmp_path), "--task-model",
                       f"openai:fake-model@http://{URL_KEY}@{host}", "--optimizer-model", "scripted",
                       "--train-size", "6", "--test-size", "6", "--dev-size", "0", "--budget", "5", "--quiet")
        assert rejected.exit_code != 0 and "HTTP 401" in rejected.stderr

    artefacts = _all_bytes(home)
    assert (home / "runs.sqlite").exists() or any(home.rglob("*.sqlite")), sorted(home.rglob("*"))
    assert len(list(home.rglob("*.sqlite"))) >= 2  # runs and cache
    for key in (ENV_KEY, URL_KEY):
        assert key.encode() not in artefacts, f"{key} in the store or cache"
        for text in outputs:
            assert key not in text, text
    assert b"user:***@" in artefacts  # the redacted spec is what the store keeps
    assert os.environ["OPENAI_API_KEY"] == ENV_KEY


def _optimize_at(tmp_path: Path, spec: str):
    return CliRunner().invoke(main, ["optimize", "--dataset", _dataset(tmp_path), "--task-model", spec,
                                     "--optimizer-model", spec, "--train-size", "6", "--test-size", "6",
                                     "--dev-size", "0", "--budget", "8", "--quiet", "--json"])


@pytest.mark.parametrize("form", ["password", "user", "query"])
def test_a_key_in_the_model_url_is_sent_as_a_bearer_key(tmp_path, monkeypatch, form):
    """Issue 26: ``http://user:KEY@host/v1`` went out as HTTP Basic auth (refused by a server that
    checks a Bearer key) and ``?api_key=KEY`` made the SDK post to ``/v1/?api_key=KEY
    chat/completions``. Now each form sends ``Authorization: Bearer KEY`` to the clean routes; other
    query items ride along on every request."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeOpenAIServer(api_key=URL_KEY, reply="positive") as server:  # 401 for anything but Bearer URL_KEY
        host = server.base_url.split("://", 1)[1]
        url = {"password": f"http://user:{URL_KEY}@{host}", "user": f"http://{URL_KEY}@{host}",
               "query": f"{server.base_url}?api_key={URL_KEY}&api-version=2024-06-01"}[form]
        result = _optimize_at(tmp_path, f"openai:fake-model@{url}")
        assert result.exit_code == 0, result.stderr
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        sent = server.gets + server.received
        assert server.gets and len(server.received) == server.answered  # preflight GETs; no POST refused
        assert server.answered == summary["llm_calls"] > 0  # every call the run counted, answered at once
        assert {r.headers.get("authorization") for r in sent} == {f"Bearer {URL_KEY}"}
        query = "?api-version=2024-06-01" if form == "query" else ""
        assert {r.path for r in server.received} == {f"/v1/chat/completions{query}"}
        assert {r.path for r in server.gets} == {f"/v1/models{query}"}
    assert URL_KEY not in result.stdout + result.stderr


def test_each_endpoint_of_a_pool_sends_its_own_url_key(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)  # a key in a URL is that endpoint's: it wins
    with FakeOpenAIServer(api_key="key-of-a-1234") as a, FakeOpenAIServer(api_key="key-of-b-5678") as b:
        spec = (f"openai:fake-model@http://u:key-of-a-1234@{a.base_url.split('://', 1)[1]},"
                f"{b.base_url}?api_key=key-of-b-5678")
        result = _optimize_at(tmp_path, spec)
        assert result.exit_code == 0, result.stderr
        for server, key in ((a, "key-of-a-1234"), (b, "key-of-b-5678")):
            assert server.answered > 0 and len(server.received) == server.answered
            assert {r.headers.get("authorization") for r in server.received + server.gets} == {f"Bearer {key}"}
    assert "key-of-" not in result.stdout + result.stderr


def test_two_different_keys_in_one_url_is_one_line():
    from promptgym.errors import PromptgymError

    with pytest.raises(PromptgymError, match=r"holds two different keys") as caught:
        make_backend("openai:m@http://u:KEY-one-1@127.0.0.1:1/v1?api_key=KEY-two-2")
    assert "KEY-one-1" not in str(caught.value) and "KEY-two-2" not in str(caught.value)


def test_database_urls_show_no_password():
    from promptgym.secrets import scrub
    from promptgym.store.db import shown_url, without_password

    url = "postgresql+psycopg://alice:Db-Secret-913@db.example:5432/runs?sslmode=require"
    assert shown_url(url) == "postgresql+psycopg://alice:***@db.example:5432/runs?sslmode=require"
    assert without_password(url) == "postgresql+psycopg://alice@db.example:5432/runs?sslmode=require"
    assert without_password("sqlite:////tmp/x.sqlite") == "sqlite:////tmp/x.sqlite"
    assert "Db-Secret-913" not in scrub(f"could not reach {url} or Db-Secret-913")
    assert scrub("postgresql://bob:other-pw-1@h/d") == "postgresql://bob:***@h/d"  # never seen: still hidden


def test_a_store_url_with_a_password_fails_in_one_line_without_it():
    pytest.importorskip("psycopg")
    from promptgym.errors import PromptgymError
    from promptgym.store.runs import RunStore

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PromptgymError) as caught:
        RunStore(f"postgresql://alice:Db-Secret-913@127.0.0.1:{port}/runs")
    message = str(caught.value)
    assert message.startswith(f"run store postgresql://alice:***@127.0.0.1:{port}/runs: cannot open (")
    assert "\n" not in message and "Db-Secret-913" not in message


def test_a_database_other_than_sqlite_or_postgresql_is_one_line_without_the_password():
    from promptgym.errors import PromptgymError
    from promptgym.store.runs import RunStore

    with pytest.raises(PromptgymError) as caught:
        RunStore("mysql://alice:My-Secret-55@db.example/runs")
    assert str(caught.value) == ("mysql://alice:***@db.example/runs: the run store and cache run on SQLite or "
                                 "PostgreSQL (sqlite:///PATH, postgresql://USER@HOST/DB), not mysql")
