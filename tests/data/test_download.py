"""promptgym.data.download, the one door for data over HTTP (bigbench:, paper:), against a real
loopback HTTP server that can misbehave (support.FileServer)."""

from __future__ import annotations

import os
import socket
import stat
import time

import pytest

from promptgym.data import bigbench, download
from promptgym.data.download import DownloadError, downloads_allowed, fetch, no_download, write_atomic

from support import FileServer

BODY = b'{"examples": []}' * 8  # 128 bytes


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def serve():
    """``serve(files)``: a FileServer of ``/PATH`` -> reply, closed after the test."""
    servers: list[FileServer] = []

    def start(files: dict) -> FileServer:
        servers.append(FileServer(files))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _get(server: FileServer, path: str = "/f", max_bytes: int = 1000, timeout: float = 2.0) -> bytes:
    return fetch(server.url + path, max_bytes=max_bytes, timeout=timeout, what="file")


def _failure(server: FileServer, path: str = "/f", **kwargs) -> DownloadError:
    with pytest.raises(DownloadError) as err:
        _get(server, path, **kwargs)
    return err.value


def test_a_passing_failure_is_retried_and_the_file_arrives(serve):
    server = serve({"/f": [503, "close", BODY], "/g": [429, (BODY, "unsized")]})
    assert _get(server) == BODY and server.hits["/f"] == 3
    assert _get(server, "/g") == BODY and server.hits["/g"] == 2  # a body without a length: read to the end


@pytest.mark.parametrize("reply, reason", [
    (503, "HTTP 503, 3 tries"),
    ("close", "the connection closed before a whole reply, 3 tries"),
    ((BODY, "partial"), f"body cut short: {len(BODY) // 2} of {len(BODY)} bytes, 3 tries"),
])
def test_a_failure_that_does_not_pass_is_named_after_three_tries(serve, reply, reason):
    server = serve({"/f": reply})
    failure = _failure(server)
    assert str(failure) == reason and not failure.absent and server.hits["/f"] == 3


def test_404_is_absent_and_other_statuses_are_named_and_not_retried(serve):
    server = serve({"/forbidden": 403})
    missing = _failure(server, "/nope")
    assert str(missing) == "404: no such file there" and missing.absent
    forbidden = _failure(server, "/forbidden")
    assert str(forbidden) == "HTTP 403 Forbidden" and not forbidden.absent
    assert server.hits == {"/nope": 1, "/forbidden": 1}


def test_a_body_over_the_size_cap_is_refused_whether_announced_or_not(serve):
    server = serve({"/sized": BODY, "/unsized": (BODY, "unsized")})
    assert _get(server, "/sized", max_bytes=len(BODY)) == BODY  # the cap itself is allowed
    assert str(_failure(server, "/sized", max_bytes=100)) == "128 bytes, over the 100-byte limit for a file"
    assert str(_failure(server, "/unsized", max_bytes=100)) == "over the 100-byte limit for a file"


def test_a_server_that_never_answers_fails_in_the_timeout_and_is_not_retried(serve):
    server = serve({"/f": "hang"})
    started = time.monotonic()
    assert str(_failure(server, timeout=0.3)) == "no answer in 0.3 s"
    assert time.monotonic() - started < 2 and server.hits["/f"] == 1


def test_a_refused_connection_is_named_at_once():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=r"^connection refused$"):
        fetch(f"http://127.0.0.1:{port}/f", max_bytes=10, timeout=2, what="file")


def test_the_proxy_variables_are_read_at_each_request(serve, monkeypatch):
    proxy = serve({"/f": BODY})
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.delenv("no_proxy")
    assert fetch("http://data.invalid/f", max_bytes=1000, timeout=2, what="file") == BODY
    assert proxy.lines == ["GET http://data.invalid/f HTTP/1.1"]


def test_a_file_url_and_a_url_that_is_not_one(tmp_path):
    (tmp_path / "f").write_bytes(BODY)
    assert fetch((tmp_path / "f").as_uri(), max_bytes=1000, timeout=2, what="file") == BODY
    with pytest.raises(ValueError, match="unknown url type"):  # the caller names the setting
        fetch("example.org/f", max_bytes=1000, timeout=2, what="file")


def test_no_download_nests_and_ends():
    assert downloads_allowed()
    with no_download():
        assert not downloads_allowed()
        with no_download():
            assert not downloads_allowed()
        assert not downloads_allowed()
    assert downloads_allowed()
    assert bigbench.no_download is no_download  # still importable where it was first defined


def test_write_atomic_writes_whole_files_only(tmp_path, monkeypatch):
    target = tmp_path / "a" / "b" / "file.json"
    write_atomic(target, b"first")
    assert target.read_bytes() == b"first"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(download.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, b"second")
    assert target.read_bytes() == b"first" and sorted(p.name for p in target.parent.iterdir()) == ["file.json"]
