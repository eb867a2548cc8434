"""A loopback stand-in for the dataset side of the Hugging Face Hub, for ``HF_ENDPOINT``.

It serves folders as dataset repositories at one fixed commit, with the routes the ``datasets``
library and ``huggingface_hub`` call to load a dataset made of data files: file downloads
(``/datasets/REPO/resolve/REV/PATH``, HEAD and GET, with the commit and ETag headers), the repo's
info (``/api/datasets/REPO[/revision/REV]``), folder listings (``/api/datasets/REPO/tree/REV/PATH``)
and ``paths-info``. A repo it does not serve answers 404 ``RepoNotFound``, a missing file 404
``EntryNotFound``, as the Hub does. So the library itself downloads and caches the data, into the
same places as from the Hub (``HF_HUB_CACHE``, ``HF_DATASETS_CACHE``); no part of it is replaced.
"""

from __future__ import annotations

import hashlib
import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from support import LoopbackServer

COMMIT = "5eed0123456789abcdef0123456789abcdef0123"


class HubServer(LoopbackServer):
    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = repos
        self.requests: list[str] = []
        super().__init__(self._handle)

    # -- routes -------------------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        head = h.command == "HEAD"
        url = urlparse(h.path)
        self.requests.append(f"{h.command} {url.path}")
        parts = unquote(url.path).strip("/").split("/")
        if parts[:2] == ["api", "datasets"]:
            ends = [i for i, part in enumerate(parts) if i > 2 and part in ("revision", "tree", "paths-info")]
            repo, rest = "/".join(parts[2:ends[0] if ends else None]), parts[ends[0]:] if ends else []
            if repo not in self.repos:
                return self._send(h, 404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"}, head)
            root = self.repos[repo]
            if not rest or rest[0] == "revision":
                files = [p.relative_to(root).as_posix() for p in sorted(root.rglob("*")) if p.is_file()]
                return self._json(h, {"id": repo, "sha": COMMIT, "siblings": [{"rfilename": f} for f in files]}, head)
            if rest[0] == "tree":
                base = root.joinpath(*rest[2:])
                recursive = parse_qs(url.query).get("recursive", ["false"])[0].lower() == "true"
                found = base.rglob("*") if recursive else base.iterdir() if base.is_dir() else []
                return self._json(h, [self._entry(root, p) for p in sorted(found)], head)
            if rest[0] == "paths-info":
                body = h.rfile.read(int(h.headers.get("Content-Length") or 0)).decode()
                paths = json.loads(body).get("paths", []) if body.startswith("{") else parse_qs(body).get("paths", [])
                return self._json(h, [self._entry(root, root / p) for p in paths if (root / p).exists()], head)
            return self._send(h, 404, b"{}", {}, head)
        if parts[:1] == ["datasets"] and "resolve" in parts:
            at = parts.index("resolve")
            repo = "/".join(parts[1:at])
            if repo not in self.repos:
                return self._send(h, 404, b"Repository not found", {"X-Error-Code": "RepoNotFound"}, head)
            path = self.repos[repo].joinpath(*parts[at + 2:])
            if not path.is_file():
                return self._send(h, 404, b"Entry not found", {"X-Error-Code": "EntryNotFound",
                                                               "X-Repo-Commit": COMMIT}, head)
            data = path.read_bytes()
            return self._send(h, 200, data, {"X-Repo-Commit": COMMIT,
                                             "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}, head)
        return self._send(h, 404, b"not found", {}, head)

    @staticmethod
    def _entry(root: Path, path: Path) -> dict[str, object]:
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            return {"type": "directory", "path": rel, "oid": "0" * 40}
        return {"type": "file", "path": rel, "size": path.stat().st_size,
                "oid": hashlib.sha1(path.read_bytes()).hexdigest()}

    def _json(self, h: BaseHTTPRequestHandler, value: object, head: bool) -> None:
        self._send(h, 200, json.dumps(value).encode(), {"Content-Type": "application/json"}, head)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str], head: bool) -> None:
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)
