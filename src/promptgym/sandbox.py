"""Run untrusted Python (model-written code) against unit tests in a separate, locked-down process.

Never in our own process. The mechanism is bubblewrap (``bwrap``, Debian package ``bubblewrap``),
which builds the child's world from Linux namespaces; resource limits come from ``setrlimit`` in
the child before the code runs; the wall clock is ours.

What the child gets, and which OS mechanism enforces it:

- **A separate process** in new PID, network, IPC, UTS and mount namespaces (bwrap
  ``--unshare-*``, ``--die-with-parent``, ``--new-session``). When the child's PID 1 ends, the
  kernel kills everything left in its PID namespace, so no grandchild outlives a run.
- **No network**: a new network namespace has only its own loopback. ``127.0.0.1`` inside is not
  the host's: a server of ours on the host's loopback is unreachable, and nothing else is routed.
- **A filesystem view of its own**: an empty read-only root with ``/usr`` (and the ``/bin``,
  ``/lib*`` links) and the interpreter's prefix bound read-only, fresh ``/proc`` and ``/dev``, and
  one writable directory: a new tmpfs of at most ``Limits.disk_mb`` (bwrap ``--size``, 0.7.0 or
  newer), mounted at ``/tmp`` and used as the working directory and ``HOME``. Nothing else of the
  host is visible (no ``/root``, ``/home``, ``/work``, ``/etc``) or writable. The tmpfs lives in
  the sandbox's own mount namespace, so nothing is written to the host's disk, and it is gone when
  the sandbox ends, whatever happened. Writing past its size fails with ENOSPC (``OSError``), so
  many files cannot add up to more than the cap (``RLIMIT_FSIZE`` alone caps each file only).
- **An unprivileged user**: when we are root, bwrap (as root, without a user namespace) runs
  ``setpriv`` (util-linux), which drops to a fresh unprivileged uid/gid from a reserved range
  (no supplementary groups, empty capability bounding set, ``no_new_privs``) before Python
  starts; the tmpfs is world-writable with the sticky bit (``1777``). A fresh uid per run makes
  the process limit count only that run's processes. When we are not root, bwrap makes a user namespace and
  the code runs as our own uid without capabilities (the same mount view keeps it from writing
  anywhere else).
- **Limits** (``setrlimit``, hard = soft, set by our runner inside the child before the code is
  compiled): ``RLIMIT_CPU`` (CPU seconds; SIGXCPU, then SIGKILL one second later),
  ``RLIMIT_AS`` (address space: a huge allocation raises MemoryError), ``RLIMIT_NPROC``
  (processes and threads of that uid: a fork bomb stalls at the cap), ``RLIMIT_FSIZE`` (largest
  file written), ``RLIMIT_NOFILE`` and ``RLIMIT_CORE`` = 0. The wall-clock limit is enforced
  here: past it, the whole process group is killed (and with it the PID namespace).
- **Bounded output**: stdout and stderr are read through a pipe; only the last ``output_chars``
  are kept, so a printing loop cannot fill our memory.

Results come back as lines on stdout tagged with a random nonce sent on stdin, so the code's own
prints cannot be mistaken for results. This protects the host, not the score: code written to
attack our runner in its own interpreter (walk the frames, find the nonce) could forge results.
It is a guard against accidents and ordinary bad code (infinite loops, ``sys.exit(0)``, fork
bombs, stray writes), not a proof system.

When ``bwrap`` is missing, or cannot make namespaces here, :class:`SandboxUnavailable` says so in
one line with how to install it. Code is never run without the sandbox.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from promptgym.errors import PromptgymError

INSTALL_HINT = ("install bubblewrap: 'apt-get install bubblewrap' (Debian/Ubuntu), "
                "'dnf install bubblewrap' (Fedora) or 'apk add bubblewrap' (Alpine)")
# Fresh unprivileged uids/gids are drawn from here when we run as root (no passwd entry needed).
UID_BASE = 1_200_000_000
UID_SPAN = 1 << 24


class SandboxUnavailable(PromptgymError):
    """The sandbox cannot run here (no bwrap, no namespaces); the message is one line."""


@dataclass(frozen=True)
class Limits:
    """Per-run limits. ``wall_seconds`` is the clock (ours); the rest are the child's rlimits."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 5
    memory_mb: int = 512  # RLIMIT_AS: address space, not resident memory
    processes: int = 32  # RLIMIT_NPROC: processes + threads of the sandbox's uid
    file_mb: int = 16  # RLIMIT_FSIZE: the largest file it may write
    disk_mb: int = 64  # the size of its writable tmpfs: everything it writes, all files together
    open_files: int = 64  # RLIMIT_NOFILE
    output_chars: int = 20_000  # of stdout+stderr kept (the tail)

    def rlimits(self) -> list[tuple[str, int, int]]:
        """(name, soft, hard). CPU's hard limit is one second above the soft one: the kernel sends
        SIGXCPU at the soft limit, SIGKILL at the hard one (with soft = hard, SIGKILL at once)."""
        cpu = max(1, int(self.cpu_seconds))
        values = [("RLIMIT_AS", int(self.memory_mb) << 20), ("RLIMIT_NPROC", max(1, int(self.processes))),
                  ("RLIMIT_FSIZE", int(self.file_mb) << 20), ("RLIMIT_NOFILE", max(16, int(self.open_files))),
                  ("RLIMIT_CORE", 0)]
        return [("RLIMIT_CPU", cpu, cpu + 1)] + [(name, v, v) for name, v in values]


@dataclass
class TestRun:
    """What one sandboxed run did.

    ``status``: ``ok`` (every test ran), ``error`` (the code did not compile or raised before any
    test: its message is in ``error``), ``timeout`` (wall clock), ``killed`` (the process died:
    CPU limit, a signal, ``os._exit``...). ``outcomes[i]`` is None when test ``i`` passed, else
    why it failed; tests that never ran say so.
    """

    status: str
    passed: int
    total: int
    outcomes: list[str | None]
    error: str | None = None
    output: str = ""
    seconds: float = 0.0
    returncode: int | None = None
    uid: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0


# The runner executes inside the sandbox, as the unprivileged user, before any untrusted code:
# read the payload (stdin), set the limits, then run the code and each test, reporting each result
# as a nonce-tagged JSON line on stdout. Its own helpers are kept out of the code's namespace.
_RUNNER = r"""
import json, os, resource, sys
payload = json.loads(sys.stdin.buffer.read().decode("utf-8"))
null = os.open(os.devnull, os.O_RDONLY); os.dup2(null, 0); os.close(null)
for name, soft, hard in payload["limits"]:
    resource.setrlimit(getattr(resource, name), (soft, hard))
_tag = payload.pop("nonce").encode()
_out = payload["report_fd"]
def _report(obj, _w=os.write, _d=json.dumps, _fd=_out, _tag=_tag):
    _w(_fd, _tag + _d(obj).encode() + b"\n")
def _why(exc, _limit=300):
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= _limit else text[:_limit] + "..."
_report({"started": True})
ns = {"__name__": "solution", "__builtins__": __builtins__}
try:
    with open("solution.py", "w", encoding="utf-8") as f:
        f.write(payload["code"])
    exec(compile(payload["code"], "solution.py", "exec"), ns)
except BaseException as exc:
    _report({"error": _why(exc)})
    sys.stdout.flush(); sys.stderr.flush(); os._exit(0)
for i, test in enumerate(payload["tests"]):
    try:
        exec(compile(test, f"test_{i}", "exec"), ns)
    except BaseException as exc:
        _report({"test": i, "ok": False, "why": _why(exc)})
    else:
        _report({"test": i, "ok": True})
try:
    sys.stdout.flush(); sys.stderr.flush()
except BaseException:
    pass
_report({"done": True})
os._exit(0)
"""


def bwrap_path() -> str | None:
    return shutil.which("bwrap") or next((p for p in ("/usr/bin/bwrap", "/bin/bwrap") if os.access(p, os.X_OK)), None)


def _require_bwrap() -> str:
    path = bwrap_path()
    if path is None:
        raise SandboxUnavailable(f"running generated code needs bubblewrap (bwrap), which is not installed: {INSTALL_HINT}")
    if not _sizes_tmpfs(path):
        raise SandboxUnavailable(f"the code sandbox caps what generated code writes with bwrap --size, which {path} "
                                 "does not have: install bubblewrap 0.7.0 or newer")
    if os.geteuid() == 0 and not _setpriv_path():
        raise SandboxUnavailable("running generated code as root needs setpriv (util-linux) to drop to an "
                                 "unprivileged user: install it with 'apt-get install util-linux'")
    return path


@functools.lru_cache(maxsize=None)
def _sizes_tmpfs(bwrap: str) -> bool:
    """Whether this bwrap has ``--size`` (bubblewrap 0.7.0, 2022) for a size-limited ``--tmpfs``."""
    try:
        text = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "--size" in text


def _setpriv_path() -> str | None:
    """setpriv as the sandbox sees it: it must live under /usr, the part of the host bound inside."""
    return next((p for p in ("/usr/bin/setpriv", "/usr/sbin/setpriv") if os.access(p, os.X_OK)), None)


def default_python() -> str:
    """The interpreter the sandbox runs: ours without its venv (the code gets the stdlib only):
    the base interpreter, which lives under /usr or under ``sys.base_prefix`` (both bound)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [getattr(sys, "_base_executable", None), sys.executable,
                  os.path.join(sys.base_prefix, "bin", version), os.path.join(sys.base_prefix, "bin", "python3")]
    base = os.path.realpath(sys.base_prefix)
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            real = os.path.realpath(candidate)
            if real.startswith(("/usr/", base + os.sep)):
                return real
    return os.path.realpath(sys.executable)


def _ro_binds(python: str) -> list[str]:
    """bwrap arguments for the read-only view: /usr, the merged-/usr links, the interpreter."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    if os.path.exists("/etc/ld.so.cache"):
        args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    roots: list[str] = []
    for prefix in {sys.base_prefix, sys.base_exec_prefix, str(Path(python).parent.parent)}:
        prefix = os.path.realpath(prefix)
        if prefix in ("/", "/usr") or prefix.startswith("/usr/") or prefix in roots:
            continue
        roots.append(prefix)
    for prefix in sorted(roots):
        parts = Path(prefix).parts
        for i in range(2, len(parts)):  # parents made traversable for the unprivileged user
            args += ["--perms", "0755", "--dir", str(Path(*parts[:i]))]
        args += ["--ro-bind", prefix, prefix]
    return args


def build_command(python: str, uid: int | None, status_fd: int | None = None,
                  limits: Limits | None = None) -> list[str]:
    """The bwrap command line (``uid`` set: we are root and drop to it with setpriv; ``status_fd``:
    where bwrap writes the host pid of the sandbox's PID 1)."""
    bwrap = _require_bwrap()
    limits = limits or Limits()
    cmd = [bwrap]
    if status_fd is not None:
        cmd += ["--json-status-fd", str(status_fd)]
    if uid is None:  # unprivileged: bwrap makes a user namespace, no capabilities inside
        cmd += ["--unshare-all", "--cap-drop", "ALL"]
    else:  # root: namespaces without a user namespace, then setpriv drops to the fresh uid
        cmd += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    cmd += ["--die-with-parent", "--new-session", "--hostname", "sandbox",
            "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
            "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8",
            "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
            "--tmpfs", "/", *_ro_binds(python), "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", str(max(1, int(limits.disk_mb)) << 20), "--tmpfs", "/tmp",
            "--chdir", "/tmp", "--remount-ro", "/", "--"]
    if uid is not None:
        cmd += [_setpriv_path() or "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return cmd + [python, "-I", "-S", "-B", "-c", _RUNNER]


def run_tests(code: str, tests: Sequence[str], limits: Limits | None = None, python: str | None = None) -> TestRun:
    """Run ``code`` then each test snippet (one test each, sharing the code's namespace) in the
    sandbox. A test passes when it runs without an exception. Raises SandboxUnavailable when the
    sandbox cannot be made; anything the code does is a result, never an exception here."""
    limits = limits or Limits()
    python = python or default_python()
    _require_bwrap()
    started = time.perf_counter()
    uid = UID_BASE + secrets.randbelow(UID_SPAN) if os.geteuid() == 0 else None
    nonce = secrets.token_hex(16)
    report_r, report_w = os.pipe()  # results come back on their own pipe, apart from the code's output
    status_r, status_w = os.pipe()  # bwrap's: the host pid of the sandbox's PID 1
    try:
        payload = json.dumps(dict(nonce=nonce, code=code, tests=list(tests), limits=limits.rlimits(),
                                  report_fd=report_w)).encode()
        proc = subprocess.Popen(build_command(python, uid, status_w, limits), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True, pass_fds=(report_w, status_w))
    except BaseException:
        os.close(report_r)
        os.close(status_r)
        raise
    finally:
        os.close(report_w)
        os.close(status_w)
    try:
        reports, output, timed_out = _talk(proc, report_r, payload, nonce.encode(), limits)
    finally:
        os.close(report_r)
        child = _child_pid(status_r)
        os.close(status_r)
        _kill(proc, child)
        _reap_namespace(child, uid)
    return _result(reports, output, timed_out, proc.returncode, len(tests), time.perf_counter() - started, uid)


def _talk(proc: subprocess.Popen, report_fd: int, payload: bytes, tag: bytes,
          limits: Limits) -> tuple[list[dict], str, bool]:
    """Send the payload; read the tagged reports and a bounded tail of the output until both pipes
    close or the wall clock runs out."""
    deadline = time.monotonic() + limits.wall_seconds
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(payload)
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # the child died before reading: its output says why
    out_fd = proc.stdout.fileno()
    keep = max(1000, limits.output_chars)
    tail, reports_raw = bytearray(), bytearray()
    timed_out = False
    with selectors.DefaultSelector() as sel:
        for fd in (out_fd, report_fd):
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(timeout=min(left, 0.5)):
                try:
                    chunk = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fd)
                elif key.fd == out_fd:
                    tail.extend(chunk)
                    del tail[:-keep]
                elif len(reports_raw) < (1 << 20):  # a flood of bogus reports is cut off
                    reports_raw.extend(chunk)
    reports = []
    for line in bytes(reports_raw).split(b"\n"):
        if line.startswith(tag):
            try:
                report = json.loads(line[len(tag):])
            except ValueError:
                continue
            if isinstance(report, dict):
                reports.append(report)
    return reports, tail.decode("utf-8", "replace"), timed_out


def _kill(proc: subprocess.Popen, child: int | None) -> None:
    """Stop the sandbox: SIGKILL its PID 1 (the kernel then kills the whole PID namespace, and bwrap
    reaps it and exits), then bwrap's process group if it is still there; reap bwrap."""
    if proc.poll() is None and child is not None and _running(child):
        try:
            os.kill(child, signal.SIGKILL)
            proc.wait(timeout=2)
        except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
            pass
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a D-state child
        proc.kill()
        proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


def _child_pid(status_fd: int) -> int | None:
    """The first thing bwrap writes on its status fd: ``{ "child-pid": N, ... }``."""
    os.set_blocking(status_fd, False)
    try:
        first = os.read(status_fd, 65536).split(b"\n", 1)[0]
        return int(json.loads(first)["child-pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _reap_namespace(pid: int | None, uid: int | None, timeout: float = 5.0) -> None:
    """Wait until nothing of the sandbox runs any more. Its PID 1 dies with bwrap and takes the
    whole PID namespace with it, but asynchronously: wait for PID 1 to be gone (it ends only once
    every process of its namespace has), and as root also kill and wait for any process left with
    the run's own uid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        if pid is not None and _running(pid):
            alive.append(pid)
        if uid is not None:
            alive += _pids_of(uid)
        if not alive:
            return
        for p in alive:
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def _pids_of(uid: int) -> list[int]:
    """Live processes whose real uid is ``uid``."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as handle:
                for line in handle:
                    if line.startswith(b"Uid:"):
                        if int(line.split()[1]) == uid and _running(int(entry.name)):
                            pids.append(int(entry.name))
                        break
        except (OSError, ValueError, IndexError):
            pass
    return pids


def _result(reports: list[dict], output: str, timed_out: bool, returncode: int | None, total: int,
            seconds: float, uid: int | None) -> TestRun:
    if not any(r.get("started") for r in reports) and not timed_out:
        said = next((line.strip() for line in reversed(output.splitlines()) if line.strip()),
                    f"exit status {returncode}")
        raise SandboxUnavailable(f"the code sandbox (bwrap) could not start here: {said}; {INSTALL_HINT}, "
                                 "and allow user namespaces (or run as root)")
    outcomes: list[str | None] = ["did not run"] * total
    error = None
    done = False
    for r in reports:
        if "test" in r and isinstance(r.get("test"), int) and 0 <= r["test"] < total:
            outcomes[r["test"]] = None if r.get("ok") else str(r.get("why", "failed"))
        elif "error" in r:
            error = str(r["error"])
        elif r.get("done"):
            done = True
    if timed_out:
        status = "timeout"
        why = "stopped: wall-clock limit"
    elif error is not None:
        status = "error"
        why = f"the code failed before the tests: {error}"
    elif done:
        status = "ok"
        why = "did not run"
    else:
        status = "killed"
        sig = -returncode if returncode is not None and returncode < 0 else (
            returncode - 128 if returncode is not None and returncode > 128 else None)
        name = signal.Signals(sig).name if sig and sig in signal.Signals._value2member_map_ else None
        why = f"stopped: the process died ({name or f'exit status {returncode}'})"
        if name == "SIGXCPU":
            why = "stopped: CPU time limit (SIGXCPU)"
    outcomes = [why if o == "did not run" else o for o in outcomes]
    passed = sum(1 for o in outcomes if o is None)
    if status == "error":
        passed, outcomes = 0, [why] * total
    return TestRun(status=status, passed=passed, total=total, outcomes=outcomes, error=error, output=output,
                   seconds=round(seconds, 3), returncode=returncode, uid=uid)
