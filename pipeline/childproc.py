"""Starting the pass's helper processes (form reader, parse process, archive writer) the same way."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def widen(pipe: Any) -> None:
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (OSError, ValueError, AttributeError, ImportError):
        pass
