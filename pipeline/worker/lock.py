"""One worker per database: the lock `intake run` holds while it runs.

A row in ``locks`` with holder, host, pid and a heartbeat every HEARTBEAT_SECONDS (service.py beats
it). A second ``intake run`` finds a live holder, says so and exits with status LOCKED_EXIT. A holder
whose heartbeat is older than LOCK_STALE_AFTER (e.g. a machine that died), or whose pid no longer
exists on this host (a killed process), is taken over. Works with any SQLAlchemy URL.
"""
from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from pipeline.config import Config
from pipeline.ledger.schema import from_iso
from pipeline.ledger.store import Store
from pipeline.worker.liveness import local_time

LOCK_NAME = "worker"
HEARTBEAT_SECONDS = 30.0
LOCK_STALE_AFTER = timedelta(minutes=5)
LOCKED_EXIT = 3


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def lock_takeable(row: Any, now: datetime, host: str) -> bool:
    if from_iso(row.heartbeat_at) < now - LOCK_STALE_AFTER:
        return True
    return row.host == host and row.pid != os.getpid() and not _pid_alive(row.pid)


def acquire_worker_lock(store: Store, now: datetime | None = None) -> tuple[str | None, Any]:
    """(holder id, None) when the lock is ours; (None, row of the live holder) otherwise."""
    host = socket.gethostname()
    holder = f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    now = now or datetime.now(timezone.utc)
    won, row = store.acquire_lock(LOCK_NAME, holder, host, os.getpid(), now,
                                  lambda r: lock_takeable(r, now, host))
    return (holder, None) if won else (None, row)


def locked_message(row: Any, cfg: Config) -> str:
    if row is None:
        return "Không giành được khoá worker (một tiến trình khác vừa giành trước) / could not take the worker lock."
    return (
        f"Một tiến trình `intake run` khác đang chạy với cùng cơ sở dữ liệu: máy {row.host}, pid {row.pid}, "
        f"chạy từ {local_time(from_iso(row.acquired_at), cfg)}, "
        f"tín hiệu gần nhất {local_time(from_iso(row.heartbeat_at), cfg)}.\n"
        "Mỗi cơ sở dữ liệu chỉ được một worker chạy. Hãy dừng tiến trình kia trước "
        f"(nếu nó đã chết trên máy khác, khoá tự hết hạn sau {int(LOCK_STALE_AFTER.total_seconds() // 60)} phút).\n"
        f"another intake run (host {row.host}, pid {row.pid}) holds the worker lock for this database; exiting."
    )
