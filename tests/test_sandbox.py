"""The code sandbox: every limit stops the code, scores it as a failure, leaves our process alive
and removes the sandbox's directory. Limits are kept small (2 cores shared with others)."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from promptgym.data.dataset import Example
from promptgym.sandbox import Limits, SandboxUnavailable, bwrap_path, run_tests
from promptgym.tasks.code import CodeTestsMetric

if bwrap_path() is None:
    reason = "bubblewrap (bwrap) is not installed: scripts/setup.sh installs it as root ('apt-get install bubblewrap')"
    if os.environ.get("CI"):
        raise RuntimeError(reason)  # CI must run these, never skip them silently
    pytest.skip(reason, allow_module_level=True)

# Code expected to finish gets a generous wall clock (a busy machine must not fail it); code
# expected to be stopped gets small limits of its own.
QUICK = Limits(wall_seconds=30, cpu_seconds=2, memory_mb=256, processes=8)
CPU_BOUND = Limits(wall_seconds=60, cpu_seconds=1, memory_mb=256, processes=8)


def _example(*tests: str) -> Example:
    return Example("ex", "Write add(a, b).", ("def add(a, b):\n    return a + b", *tests))


def _run(code: str, tests=("assert True",), limits: Limits = QUICK):
    return run_tests(code, list(tests), limits)


def _host_temp() -> set[str]:
    return set(os.listdir(tempfile.gettempdir()))


def _stopped_and_clean(run, before: set[str] | None = None) -> None:
    assert run.passed == 0 and run.fraction == 0.0
    if before is not None:  # nothing of the sandbox's was left in (or ever written to) the host's temp folder
        assert not {n for n in _host_temp() - before if n.startswith("promptgym-sandbox")}
    if run.uid is not None:  # nothing of that user is left running
        left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _uid(p) == run.uid]
        assert left == []
    assert subprocess.run(["true"]).returncode == 0  # and we are fine


def _uid(proc: Path) -> int | None:
    try:
        for line in (proc / "status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# --- scores ---------------------------------------------------------------------------------

def test_correct_code_scores_one_wrong_zero_partial_the_fraction():
    metric = CodeTestsMetric(limits=QUICK)
    example = _example("assert add(2, 3) == 5", "assert add(-1, 1) == 0", "assert add(2, 2) == 4")
    assert metric("```python\ndef add(a, b):\n    return a + b\n```", example) == 1.0
    assert metric("def add(a, b):\n    return a - b", example) == 0.0
    assert metric("Here it is:\ndef add(a, b):\n    return 4 if a == 2 else a + b\nHope it helps!", example) == pytest.approx(2 / 3)
    assert metric.last_run.outcomes[0].startswith("AssertionError")
    strict = CodeTestsMetric(all_or_nothing=True, limits=QUICK)
    assert strict("def add(a, b):\n    return 4 if a == 2 else a + b", example) == 0.0
    assert strict("def add(a, b):\n    return a + b", example) == 1.0


def test_code_that_does_not_compile_or_exits_scores_zero():
    metric = CodeTestsMetric(limits=QUICK)
    example = _example("assert add(1, 1) == 2")
    assert metric("def add(a, b) return a + b", example) == 0.0
    assert metric.last_run.status == "error" and "SyntaxError" in metric.last_run.error
    assert metric("import sys\nsys.exit(0)", example) == 0.0  # exiting "successfully" is no pass
    assert metric("import os\nos._exit(0)", example) == 0.0
    assert metric.last_run.status == "killed"


# --- limits ---------------------------------------------------------------------------------

def test_infinite_loop_is_stopped_by_the_cpu_limit():
    # A wall clock far beyond the CPU limit, so that on a busy machine too the CPU limit is what fires
    # (the wall clock has a test of its own below).
    run = _run("while True:\n    pass\n", limits=CPU_BOUND)
    assert (run.status, run.outcomes[0]) == ("killed", "stopped: CPU time limit (SIGXCPU)")
    assert run.seconds < CPU_BOUND.wall_seconds
    _stopped_and_clean(run)


def test_infinite_loop_is_stopped_by_the_wall_clock_when_cpu_allows_more():
    run = _run("while True:\n    pass\n", limits=Limits(wall_seconds=1.5, cpu_seconds=60, processes=8))
    assert (run.status, run.outcomes[0]) == ("timeout", "stopped: wall-clock limit")
    _stopped_and_clean(run)


def test_sleeping_code_is_stopped_by_the_wall_clock():
    run = _run("import time\ntime.sleep(60)\n", limits=Limits(wall_seconds=1.5, cpu_seconds=2, processes=8))
    assert run.status == "timeout" and run.seconds < 8
    _stopped_and_clean(run)


def test_huge_allocation_fails():
    run = _run("data = bytearray(8 * 1024 ** 3)\n")
    assert run.status == "error" and "MemoryError" in run.error
    _stopped_and_clean(run)
    inside_test = _run("def grow():\n    return [0] * (2 * 1024 ** 3)\n", tests=["assert grow()", "assert True"])
    assert inside_test.outcomes[0].startswith("MemoryError") and inside_test.outcomes[1] is None


def test_network_is_unreachable():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted: list[bytes] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    accepted.append(conn.recv(100))
                except OSError:
                    accepted.append(b"")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        code = (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                "s.sendall(b'from the sandbox')\n")
        run = _run(code)
        assert run.status == "error" and ("Connection refused" in run.error or "unreachable" in run.error.lower())
        _stopped_and_clean(run)
        time.sleep(0.3)
        assert accepted == []  # nothing reached our server
        with socket.create_connection(("127.0.0.1", port), timeout=2) as ours:  # the server does work
            ours.sendall(b"from the test")
        deadline = time.monotonic() + 5
        while not accepted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert accepted == [b"from the test"]
    finally:
        stop.set()
        thread.join(timeout=2)
        server.close()


def test_no_writes_outside_its_directory(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o777)  # only the sandbox, not file permissions, may stop the write
    target = outside / "pwned.txt"
    code = (f"open({str(target)!r}, 'w').write('x')\n")
    run = _run(code)
    assert run.status == "error"
    assert not target.exists()
    _stopped_and_clean(run)
    # writing is allowed in its own directory (cwd = /tmp inside), and that directory goes away
    attempts = ("import os\nresults = {}\n"
                "for path in ['/etc/pwned', '/usr/pwned', '/pwned', '/root/pwned', '/home/pwned', "
                f"{str(target)!r}, '/dev/shm/pwned', '/var/tmp/pwned']:\n"
                "    try:\n        open(path, 'w').write('x')\n        results[path] = 'written'\n"
                "    except OSError as exc:\n        results[path] = type(exc).__name__\n"
                "open('mine.txt', 'w').write('ok')\n")
    run = _run(attempts, tests=["assert all(v != 'written' for v in results.values()), results",
                                "assert open('/tmp/mine.txt').read() == 'ok'"])
    assert run.outcomes == [None, None], run.outcomes
    assert not target.exists()


def test_many_files_past_the_total_cap_are_stopped_and_score_zero():
    """Issue 26: RLIMIT_FSIZE caps each file only; 1 GB went into the host's temp folder in 1.9 s as
    many files under the cap. Now everything written shares one tmpfs of Limits.disk_mb (64 MB)."""
    before = _host_temp()
    writer = ("def add(a, b):\n    return a + b\n"
              "for i in range({n}):\n    with open(f'part{{i}}.bin', 'wb') as f:\n        f.write(b'x' * (1 << 20))\n")
    metric = CodeTestsMetric(limits=QUICK)  # QUICK keeps the default disk cap
    assert metric(writer.format(n=8), _example("assert add(2, 3) == 5")) == 1.0  # 8 MB: fine
    assert metric(writer.format(n=80), _example("assert add(2, 3) == 5")) == 0.0  # 80 files of 1 MB: stopped
    run = metric.last_run
    assert run.status == "error" and "No space left on device" in run.error, (run.status, run.error)
    _stopped_and_clean(run, before)
    assert Limits().disk_mb == 64 and Limits().file_mb == 16
    small = _run(writer.format(n=3), limits=Limits(wall_seconds=30, cpu_seconds=2, processes=8, disk_mb=2))
    assert small.status == "error" and "No space left" in small.error  # the cap is the setting's


def test_fork_bomb_is_contained():
    # The process cap refuses the 7th process, the forking loop then burns CPU and the CPU limit ends
    # it; the wall clock is far off, so that a busy machine does not change which limit fires.
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    run = _run(bomb, limits=Limits(wall_seconds=CPU_BOUND.wall_seconds, cpu_seconds=1, processes=6))
    assert (run.status, run.outcomes[0]) == ("killed", "stopped: CPU time limit (SIGXCPU)")
    assert run.seconds < CPU_BOUND.wall_seconds
    _stopped_and_clean(run)


def test_process_cap_is_what_stops_forking():
    code = ("import os, time\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError:\n"
            "        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    n += 1\n")
    run = _run(code, tests=["assert n < 6, n"], limits=Limits(wall_seconds=30, cpu_seconds=2, processes=6))
    assert run.status == "ok" and run.outcomes == [None]  # the 6th process was refused


def test_output_flood_is_bounded():
    run = _run("import sys\nfor _ in range(50000):\n    sys.stdout.write('x' * 100 + '\\n')\n",
               limits=Limits(wall_seconds=30, cpu_seconds=5, output_chars=5000))
    assert run.status == "ok" and run.passed == 1
    assert len(run.output) <= 5000


def test_missing_bwrap_is_one_clear_line(monkeypatch):
    import promptgym.sandbox as sandbox

    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    with pytest.raises(SandboxUnavailable) as info:
        CodeTestsMetric()("def f(): pass", _example("assert f() is None"))
    message = str(info.value)
    assert "\n" not in message and "apt-get install bubblewrap" in message


def test_a_bwrap_without_size_is_one_clear_line(monkeypatch):
    """The total cap needs bwrap --size (bubblewrap 0.7.0): an older one is refused, never run uncapped."""
    import promptgym.sandbox as sandbox

    monkeypatch.setattr(sandbox, "_sizes_tmpfs", lambda path: False)
    with pytest.raises(SandboxUnavailable) as info:
        CodeTestsMetric()("def f(): pass", _example("assert f() is None"))
    message = str(info.value)
    assert "\n" not in message and "bubblewrap 0.7.0 or newer" in message
