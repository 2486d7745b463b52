"""What this process does for each district it serves: its holder id (in the lease row and in
``outbox.claimed_by``), until when it may work for a district (the lease's fence, kept by worker/lock.py), and
one job at a time per district.

A registry of this process only, below ``plan/`` and ``outbox/`` (which ask it before sending) and ``worker/``
(which keeps it): nothing here touches the database.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path

_HOLDER: tuple[int, str] | None = None
_HELD: dict[str, float] = {}  # config path → boot-clock instant until which this process may work for it
_JOB_LOCKS: dict[str, threading.RLock] = {}
_REGISTRY = threading.Lock()


def holder_id() -> str:
    """This process's holder id, ``host:pid:random``: what the lease row and ``outbox.claimed_by`` record."""
    global _HOLDER
    with _REGISTRY:
        if _HOLDER is None or _HOLDER[0] != os.getpid():  # a forked child is another holder
            _HOLDER = (os.getpid(), f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
        return _HOLDER[1]


def boot_clock() -> float:
    """Elapsed seconds on this machine's boot clock (goes on while the machine sleeps; never set back)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic()


def district_key(cfg_path: str | Path) -> str:
    return str(Path(cfg_path).resolve())


def serve_until(cfg_path: str | Path, until: float | None) -> None:
    """This process serves the district and may work for it until ``until`` (boot clock; 0: not now);
    None: it no longer serves it."""
    with _REGISTRY:
        if until is None:
            _HELD.pop(district_key(cfg_path), None)
        else:
            _HELD[district_key(cfg_path)] = until


def lease_held(cfg_path: str | Path) -> bool:
    """May this process do the district's work now? False while a worker of this process stands by for it or
    has lost its lease; True when no worker of this process serves that config (`intake poll`, tests)."""
    with _REGISTRY:
        until = _HELD.get(district_key(cfg_path))
    return until is None or boot_clock() < until


def job_lock(cfg_path: str | Path) -> threading.RLock:
    """A district's jobs run one at a time in this process (the scheduler's thread, the IDLE thread, the
    desk's flush after an action): re-entrant, so a job that flushes the outbox holds it once more."""
    with _REGISTRY:
        return _JOB_LOCKS.setdefault(district_key(cfg_path), threading.RLock())
