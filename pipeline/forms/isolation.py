"""The reading process: a long-lived child with a memory limit and a timeout per document.

Why: a 4.8 KB sheet with cells at A1 and XFD1048576 makes calamine abort the whole process
(SIGABRT, tafia/calamine#693), and a 300 MB shared string costs gigabytes in any reader. No
``except`` catches that, so every read happens in a child under RLIMIT_AS and a timeout. The child
is started once and kept (starting one costs a Python start and the readers' imports), and started
anew after it dies, overruns its time or grows past ``worker_recycle_rss_bytes``. A killed or
timed-out child is a finding on that document ("file-too-large", "file-timeout"); the caller
never dies.

A .doc or .rtf is converted to .docx by LibreOffice inside the child (convert.py): LibreOffice runs under
the child's memory limit, within a share of the document's time, and in a process group of its own that the
child kills when that time is up.

One request, one reply, in turn: the parent writes a request and waits (poll with the timeout) for
its reply before anything else goes to the child. Over the child's stdin/stdout each message is an
8-byte big-endian length, then a pickle: request ``(Rules, core.Request)``, reply
``(DocumentReading, stats)``. The Rules go with every request (a few KB): nothing to keep in step.

Why a plain ``python -c`` child and not ``multiprocessing``: the "fork" start method copies the
calling process, threads, open connections and all, which is unsafe once it runs threads, and puts
the parent's whole address space under the child's RLIMIT_AS from the start; "spawn" and
"forkserver" start a resource-tracker process besides, re-import the caller's ``__main__``, and a
killed or hung child still needs the same kill, restart and timeout code as here. ``subprocess``
gives a fresh interpreter, this checkout's code, no inherited descriptors, and nothing else.
"""
from __future__ import annotations

import atexit
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
from typing import Any, BinaryIO

from pipeline.forms.convert import read_request
from pipeline.forms.core import Request, fail
from pipeline.model import DocumentReading
from pipeline.forms.rules import Rules

_LEN = struct.Struct(">Q")
_ROOT = str(Path(__file__).resolve().parents[2])  # the checkout: the child imports the same code, installed or not


class ReaderDied(Exception):
    """The child did not answer: ``reason`` "timeout" (killed when its time was up) or "crashed"."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _frame(obj: Any) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(body)) + body


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the child is then recycled only when it dies or overruns
        return 0


# ---------------------------------------------------------------- child side
def _read_message(stream: BinaryIO) -> Any:
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        raise EOFError
    (n,) = _LEN.unpack(head)
    body = stream.read(n)
    if len(body) < n:
        raise EOFError
    return pickle.loads(body)


def enter_child() -> tuple[BinaryIO, BinaryIO]:
    """What a reading child does first: ignore the signals its parent decides on, cap its memory at
    ``argv[1]`` bytes, and keep its protocol apart from anything printed. Returns (requests, replies)."""
    import resource

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the parent decides
    # systemd's stop sends SIGTERM to every process of the service: the document in hand is finished and the
    # child leaves when the parent closes its stdin, instead of the unit's file being reported as too large.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    limit = int(sys.argv[1])
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):
        pass
    # Replies go out on a copy of fd 1, and fd 1 becomes stderr (discarded): nothing a reader or a
    # library prints can get into the protocol.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    # Import the readers now, so the first document does not pay for it.
    import lxml.etree  # noqa: F401
    import python_calamine  # noqa: F401

    return sys.stdin.buffer, replies


def child_main() -> None:
    """Answer each request on stdin with its reply, until stdin ends (the parent closed it or died)."""
    import resource

    requests, replies = enter_child()

    while True:
        try:
            rules, req = _read_message(requests)
        except EOFError:
            return
        t0 = time.perf_counter()
        try:
            reading = read_request(req, rules)
        except MemoryError:
            reading = fail(rules, "file-too-large", req.fmt, "không đủ bộ nhớ để đọc")
        stats = {
            "seconds": time.perf_counter() - t0,
            "rss": _resident_bytes(),
            "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        }
        try:
            message = _frame((reading, stats))
        except MemoryError:
            message = _frame((fail(rules, "file-too-large", req.fmt, "kết quả quá lớn"), stats))
        replies.write(message)
        replies.flush()


# ---------------------------------------------------------------- parent side
def _read_exact(fd: int, n: int, deadline: float) -> bytes:
    """``n`` bytes from ``fd``: ReaderDied("timeout") past ``deadline`` (time.monotonic), EOFError at its end."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    chunks: list[bytes] = []
    while n:
        # What has already arrived is read even when the time is up: only silence is a timeout.
        if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
            raise ReaderDied("timeout")
        chunk = os.read(fd, min(n, 1 << 16))  # os.read allocates what it is asked for: no more than a pipe holds
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


class Reader:
    """One child process, one document at a time (a lock), started when needed."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.memory_bytes = 0  # the child's RLIMIT_AS
        self.owner = os.getpid()  # a forked copy of this object must not touch the child
        self.lock = threading.Lock()
        self.last_stats: dict[str, Any] = {}  # the child's figures after its last reply
        self.starts = 0

    def read(self, req: Request, rules: Rules) -> DocumentReading:
        """The child's reading of ``req``; ReaderDied when it died or overran (it is then stopped)."""
        request = _frame((rules, req))  # out of the try below: a failure here is a bug, not the child's death
        with self.lock:
            proc = self._ready(rules.limits["worker_memory_bytes"])
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(request)
                proc.stdin.flush()
                deadline = time.monotonic() + float(rules.limits["worker_timeout_seconds"])
                (n,) = _LEN.unpack(_read_exact(proc.stdout.fileno(), _LEN.size, deadline))
                reading, stats = pickle.loads(_read_exact(proc.stdout.fileno(), n, deadline))
            except ReaderDied:
                self.stop()
                raise
            except Exception as exc:  # noqa: BLE001 - a broken pipe, EOF or a garbled reply: the child is gone
                died = ReaderDied("crashed", _describe_exit(self._exit_code()))
                self.stop()
                raise died from exc
            except BaseException:  # interrupted mid-exchange: the child's reply would go to the next document
                self.stop()
                raise
            self.last_stats = stats
            if stats.get("rss", 0) > rules.limits["worker_recycle_rss_bytes"]:
                self.stop(graceful=True)  # a reader's heap rarely shrinks back: the next document gets a fresh child
            return reading  # type: ignore[no-any-return]

    def _ready(self, memory_bytes: int) -> subprocess.Popen[bytes]:
        # A child that is gone (it died between documents) or runs under another Rules' memory limit is replaced.
        if self.proc is not None and (self.proc.poll() is not None or self.memory_bytes != memory_bytes):
            self.stop()
        if self.proc is None:
            env = dict(os.environ)
            env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            self.proc = subprocess.Popen(self._command(memory_bytes), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, env=env, close_fds=True)
            self.memory_bytes = memory_bytes
            self.starts += 1
        return self.proc

    def _command(self, memory_bytes: int) -> list[str]:
        """The child's command line; its last argument is the memory limit (see enter_child)."""
        return [sys.executable, "-c", "from pipeline.forms.isolation import child_main; child_main()",
                str(memory_bytes)]

    def _exit_code(self) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, graceful: bool = False) -> None:
        """Stop the child. ``graceful``: it is between documents; it is given a moment to leave on the end of its
        input, as it then tidies up after itself (its LibreOffice profile, convert.py), and killed after that."""
        proc, self.proc = self.proc, None
        if proc is None or self.owner != os.getpid():
            return
        if graceful:
            try:
                if proc.stdin:
                    proc.stdin.close()
                proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        proc.kill()
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


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "tiến trình đọc không phản hồi"
    if code < 0:
        try:
            return f"tiến trình đọc bị dừng ({signal.Signals(-code).name})"
        except ValueError:
            return f"tiến trình đọc bị dừng (tín hiệu {-code})"
    return f"tiến trình đọc thoát với mã {code}"


_READER: Reader | None = None
_READER_LOCK = threading.Lock()


def reader() -> Reader:
    """This process's reader (a forked process gets its own: the child and its pipes belong to the parent)."""
    global _READER
    with _READER_LOCK:
        if _READER is None or _READER.owner != os.getpid():
            _READER = Reader()
            atexit.register(_READER.stop, graceful=True)
        return _READER


def read_isolated(req: Request, rules: Rules) -> DocumentReading:
    """``convert.read_request`` (core.parse, .doc/.rtf converted first) in the reading process; a child that
    died or overran is a finding on the document."""
    try:
        return reader().read(req, rules)
    except ReaderDied as died:
        if died.reason == "timeout":
            return fail(rules, "file-timeout", req.fmt, f"quá {rules.limits['worker_timeout_seconds']} giây")
        return fail(rules, "file-too-large", req.fmt, died.detail)
