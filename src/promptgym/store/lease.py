"""Run ownership: a lease with a heartbeat, so one run has one worker.

The process that runs a run writes its owner (host, pid, a random token) and a heartbeat time to
the run's row and a daemon thread refreshes the heartbeat every ``heartbeat`` seconds. The lease
is live while the heartbeat is younger than ``lease`` seconds; a run whose lease expired (or whose
owner is a dead process on this host) can be taken over by ``promptgym resume``; a live one can't.
Settings: ``PROMPTGYM_HEARTBEAT_SECONDS`` (default 10) and ``PROMPTGYM_LEASE_SECONDS`` (default 30).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from promptgym.errors import PromptgymError

if TYPE_CHECKING:
    from promptgym.store.runs import RunStore

DEFAULT_HEARTBEAT = 10.0
DEFAULT_LEASE = 30.0


def lease_settings() -> tuple[float, float]:
    """(heartbeat, lease) in seconds, from the environment; the lease is at least 2 heartbeats."""
    heartbeat = float(os.environ.get("PROMPTGYM_HEARTBEAT_SECONDS") or DEFAULT_HEARTBEAT)
    lease = float(os.environ.get("PROMPTGYM_LEASE_SECONDS") or DEFAULT_LEASE)
    return heartbeat, max(lease, 2 * heartbeat)


class LeaseLost(PromptgymError):
    """This process no longer holds the run (stopped past its lease, the run taken over by a
    resume): it must stop and write nothing more to the run, its status least of all."""


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    token: str

    @classmethod
    def me(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), uuid.uuid4().hex[:16])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def holder_state(row: dict[str, Any], lease: float, now: float | None = None) -> str:
    """``live``, ``expired`` (heartbeat too old), ``dead`` (owner's pid is gone, same host) or
    ``none`` (nobody holds the run, or a store from before leases)."""
    if not row.get("owner_token") or row.get("heartbeat") is None:
        return "none"
    if row.get("owner_host") == socket.gethostname() and row.get("owner_pid") and not pid_alive(row["owner_pid"]):
        return "dead"
    now = time.time() if now is None else now
    return "live" if now - row["heartbeat"] < lease else "expired"


@dataclass
class Lease:
    """A held lease; ``start()`` runs the heartbeat thread, ``release()`` ends it and frees the run.
    ``lost`` turns true if another process took the run over (our heartbeat found a new token)."""

    store: RunStore
    run_id: str
    owner: Owner
    heartbeat: float = DEFAULT_HEARTBEAT
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Lease:
        self._thread = threading.Thread(target=self._beat, name=f"promptgym-lease-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                if not self.store.heartbeat(self.run_id, self.owner.token):
                    self.lost = True
                    return
            except Exception:  # a busy store: try again at the next beat
                continue

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self.lost:
            self.store.release(self.run_id, self.owner.token)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
