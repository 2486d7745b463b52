"""Starting the pass's helper processes (form reader, parse process, archive writer) the same way."""
from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

_ROOT = str(Path(__file__).resolve().parents[1])


def spawn(code: str, *args: str, stderr: Any = None) -> "subprocess.Popen[bytes]":
    """``python -c code args…`` with pipes on stdin/stdout; this checkout first on its import path (so the
    child runs the same code without an install), no inherited descriptors, 1 MiB pipes where Linux
    allows: a child can then run a batch ahead of the reader of its replies instead of ~64 KiB."""
    env = dict(os.environ)
    env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=stderr, env=env, close_fds=True)
    for pipe in (proc.stdin, proc.stdout):
        widen(pipe)
    return proc


def per_process(make: Callable[[], T]) -> Callable[[], T]:
    """An accessor of one ``make()`` per process: made on first use, made anew in a forked child (a helper
    process and its pipes belong to the process that started it)."""
    lock = threading.Lock()
    held: dict[int, T] = {}

    def get() -> T:
        pid = os.getpid()
        with lock:
            if pid not in held:
                held.clear()
                held[pid] = make()
            return held[pid]

    return get


def widen(pipe: Any) -> None:
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (OSError, ValueError, AttributeError, ImportError):
        pass


# The protocol the helper processes speak over their pipes: 8-byte big-endian length, then a pickle.
FRAME = struct.Struct(">Q")


def frame(obj: Any) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME.pack(len(body)) + body


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    """``n`` bytes from ``fd``; TimeoutError past ``deadline`` (time.monotonic; None: no limit), EOFError at
    the end of the stream."""
    chunks: list[bytes] = []
    while n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise TimeoutError
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None) -> Any:
    (n,) = FRAME.unpack(read_exact(fd, FRAME.size, deadline))
    return pickle.loads(read_exact(fd, n, deadline))


def serve(handle: Callable[[Any], Any]) -> None:
    """A child's loop: each request frame on stdin is answered with ``handle(request)`` on stdout, until
    stdin ends."""
    rin, wout = sys.stdin.fileno(), sys.stdout.fileno()
    while True:
        try:
            request = read_frame(rin, None)
        except EOFError:
            return
        write_all(wout, frame(handle(request)))
