"""The reading process: a long-lived child with a memory limit, re-used across calls.

Why: a 4.8 KB sheet with cells at A1 and XFD1048576 makes calamine abort the whole process
(SIGABRT, tafia/calamine#693), and a 300 MB shared string costs gigabytes in any reader. No
``except`` catches that, so every read happens in a child under RLIMIT_AS and a timeout. The child
is started once and kept (a small form then costs a pipe round trip, ~1 ms), restarted after it
dies, overruns or grows past a resident-memory threshold. A killed child is a finding on that
document; the caller never dies.

Protocol over the child's stdin/stdout: 8-byte big-endian length, then a pickle.
Request (rules_digest, rules_or_None, core.Request) → reply (DocumentReading, stats dict).
"""
from __future__ import annotations

import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.forms.core import Request, fail, parse
from pipeline.model import DocumentReading
from pipeline.rules import Rules

log = logging.getLogger(__name__)
_LEN = struct.Struct(">Q")


class WorkerDied(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason  # "timeout" | "crashed"
        self.detail = detail


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerDied("timeout")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise WorkerDied("timeout")
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


# ---------------------------------------------------------------- child side
def child_main() -> None:
    import resource

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 2**30
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):
        pass
    rin, wout = sys.stdin.fileno(), sys.stdout.fileno()
    # Nothing else may write to the protocol pipe.
    sys.stdout = sys.stderr
    rules_cache: dict[str, Rules] = {}
    # Import the readers now, so the first document does not pay for it.
    import python_calamine  # noqa: F401
    import lxml.etree  # noqa: F401

    while True:
        try:
            (n,) = _LEN.unpack(_read_exact(rin, _LEN.size, None))
            digest, rules, req = pickle.loads(_read_exact(rin, n, None))
        except EOFError:
            return
        if rules is not None:
            rules_cache.clear()
            rules_cache[digest] = rules
        rules = rules_cache[digest]
        t0 = time.perf_counter()
        try:
            reading = parse(req, rules)
        except MemoryError:
            reading = fail(rules, "file-too-large", req.fmt, "không đủ bộ nhớ để đọc")
        stats = {
            "seconds": time.perf_counter() - t0,
            "rss": _rss_bytes(),
            "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        }
        try:
            payload = pickle.dumps((reading, stats), protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            payload = pickle.dumps((fail(rules, "file-too-large", req.fmt, "kết quả quá lớn"), stats))
        _write_all(wout, _LEN.pack(len(payload)) + payload)


# ---------------------------------------------------------------- parent side
class Worker:
    """One child process, serialised by a lock; restarted on demand."""

    def __init__(self, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid_owner = 0
        self.rules_digest: str | None = None
        self.lock = threading.Lock()
        self.last_stats: dict[str, Any] = {}
        self.starts = 0

    def _start(self) -> subprocess.Popen[bytes]:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        proc = subprocess.Popen(
            [sys.executable, "-c", "from pipeline.forms.isolation import child_main; child_main()",
             str(self.memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        self.proc, self.pid_owner, self.rules_digest = proc, os.getpid(), None
        self.starts += 1
        return proc

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or self.pid_owner != os.getpid():
            return
        try:
            proc.kill()
        except OSError:
            pass
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass

    def ensure(self) -> subprocess.Popen[bytes]:
        proc = self.proc
        if proc is None or self.pid_owner != os.getpid() or proc.poll() is not None:
            if proc is not None and self.pid_owner == os.getpid():
                self.stop()
            proc = self._start()
        return proc

    def run(self, req: Request, rules: Rules, timeout: float) -> DocumentReading:
        with self.lock:
            proc = self.ensure()
            assert proc.stdin is not None and proc.stdout is not None
            send_rules = rules if self.rules_digest != rules.digest else None
            payload = pickle.dumps((rules.digest, send_rules, req), protocol=pickle.HIGHEST_PROTOCOL)
            deadline = time.monotonic() + timeout
            try:
                _write_all(proc.stdin.fileno(), _LEN.pack(len(payload)) + payload)
                self.rules_digest = rules.digest
                (n,) = _LEN.unpack(_read_exact(proc.stdout.fileno(), _LEN.size, deadline))
                reading, stats = pickle.loads(_read_exact(proc.stdout.fileno(), n, deadline))
            except WorkerDied:
                self.stop()
                raise
            except (EOFError, BrokenPipeError, OSError, pickle.UnpicklingError) as exc:
                code = proc.poll()
                if code is None:
                    try:
                        code = proc.wait(timeout=1)
                    except subprocess.TimeoutExpired:
                        code = None
                self.stop()
                raise WorkerDied("crashed", _describe_exit(code)) from exc
            self.last_stats = stats
            if stats.get("rss", 0) > rules.limits["worker_recycle_rss_bytes"]:
                self.stop()
            return reading


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "tiến trình đọc không phản hồi"
    if code < 0:
        try:
            return f"tiến trình đọc bị dừng ({signal.Signals(-code).name})"
        except ValueError:
            return f"tiến trình đọc bị dừng (tín hiệu {-code})"
    return f"tiến trình đọc thoát với mã {code}"


_WORKER: Worker | None = None
_WORKER_LOCK = threading.Lock()


def worker(rules: Rules) -> Worker:
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            import atexit

            _WORKER = Worker(rules.limits["worker_memory_bytes"])
            atexit.register(_WORKER.stop)
        return _WORKER


def isolated_parse(req: Request, rules: Rules) -> DocumentReading:
    if os.environ.get("INTAKE_FORMS_INPROCESS") == "1" or sys.platform == "win32":
        return parse(req, rules)
    w = worker(rules)
    try:
        return w.run(req, rules, float(rules.limits["worker_timeout_seconds"]))
    except WorkerDied as died:
        if died.reason == "timeout":
            return fail(rules, "file-timeout", req.fmt, f"quá {rules.limits['worker_timeout_seconds']} giây")
        return fail(rules, "file-too-large", req.fmt, died.detail)
