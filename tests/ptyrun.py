"""Run a command with its stderr on a real pseudo-terminal and collect what the terminal showed."""
from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import Sequence


def run_on_pty(cmd: Sequence[str], env: dict[str, str], *, columns: int = 100, cwd: Path | None = None,
               timeout: float = 120) -> tuple[int, str, str]:
    """(exit code, stdout, what stderr's terminal showed); ``columns`` 0 reports no terminal size."""
    master, slave = pty.openpty()
    if columns:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    try:
        proc = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                                env=env, cwd=cwd)
    finally:
        os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            elif proc.poll() is not None:
                break
        out = proc.communicate(timeout=timeout)[0]
    finally:
        os.close(master)
    return proc.returncode, out.decode(), shown.decode("utf-8", "replace")
