"""A throwaway PostgreSQL server for the tests, from Debian's binaries (``apt-get install postgresql``).

``PostgresServer.start()`` runs ``initdb`` into a fresh temporary folder and ``pg_ctl start`` on a
free port of 127.0.0.1, its unix socket in that folder, ``fsync`` off (the data is thrown away). The
superuser ``promptgym`` logs in over TCP with a password (scram), so the tests can also give a
wrong one. As root, PostgreSQL refuses to run: then the binaries run as the ``postgres`` user
(``runuser``) and the folder is handed to it. Nothing system-wide is started or changed.

``start()`` raises ``Unavailable`` with the reason when it cannot start (no binaries, no psycopg,
no non-root user, the server failed); the fixtures turn that into a skip, or into a failure when
``PROMPTGYM_REQUIRE_POSTGRES=1`` (CI, once it has installed PostgreSQL).
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

USER = "promptgym"


class Unavailable(Exception):
    pass


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise Unavailable("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl; "
                          "apt-get install postgresql, as .ci/run does)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self) -> None:
        self.root: Path | None = None
        self.port = 0
        self.password = secrets.token_hex(12)
        self._as_user: list[str] = []

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://{USER}:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self._as_user, *args], capture_output=True, text=True, timeout=timeout,
                              cwd=str(self.root))

    def start(self) -> PostgresServer:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise Unavailable("psycopg is not installed (pip install -e '.[postgres]')") from None
        bin_dir = _bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="promptgym-pg-"))
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                raise Unavailable("running as root and runuser is missing: PostgreSQL refuses to run as root")
            try:
                import pwd

                entry = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no 'postgres' user to run the server as") from None
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as_user:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        data = self.root / "data"
        done = self._run(str(bin_dir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}",
                         "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
        if done.returncode != 0:
            raise Unavailable(f"initdb failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
        self.port = _free_port()
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        done = self._run(str(bin_dir / "pg_ctl"), "start", "-D", str(data), "-w", "-t", "60",
                         "-l", str(self.root / "server.log"), "-o", options, timeout=90)
        if done.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace") if (self.root / "server.log").exists() else ""
            self.stop()
            raise Unavailable(f"pg_ctl start failed: {(log or done.stderr).strip().splitlines()[-1:]}")
        self._pg_ctl = bin_dir / "pg_ctl"
        return self

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.root is None:
            return
        if getattr(self, "_pg_ctl", None):
            self._run(str(self._pg_ctl), "stop", "-D", str(self.root / "data"), "-m", "immediate", "-w")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
