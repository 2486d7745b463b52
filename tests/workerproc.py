"""`intake run` (or any `python -m pipeline` command) as a real process whose log lines are collected as
they come: the worker tests (IDLE, standby and takeover) start, watch, stop and kill it."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from servers import LineLog

ROOT = Path(__file__).resolve().parents[1]


class Worker:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline", *args],
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.output = LineLog(self.proc.stderr, lambda: self.proc.poll() is None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log(self) -> str:
        return self.output.text

    def wait_log(self, needle: str, count: int = 1, timeout: float = 30.0) -> None:
        """Until ``needle`` has appeared in ``count`` log lines."""
        if not self.output.wait(needle, count, timeout):
            raise AssertionError(f"{needle!r} ×{count} not logged; log:\n{self.log}")

    def sigterm(self, within: float | None = None) -> float:
        """SIGTERM; the worker must stop cleanly (exit 0), within ``within`` seconds when given. Returns how
        long it took."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        took = time.monotonic() - started
        self.output.join(timeout=5)
        assert rc == 0, self.log
        assert "worker stopped cleanly" in self.log
        if within is not None:
            assert took < within, f"SIGTERM took {took:.1f} s"
        return took

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused process would not die until resumed
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def running(*args: str) -> Iterator[Worker]:
    w = Worker(*args)
    try:
        yield w
    finally:
        w.kill()
