"""One worker per district at a time: the lease `intake run` holds, and what jobs ask before they run.

The lease is a row of the district's ``locks`` table that expires by the database's clock (ledger/leases.py):
taken for LEASE_SECONDS, renewed every RENEW_SECONDS. A worker that finds it held stands by and tries again
every STANDBY_SECONDS, so it takes over within a minute of the holder's death (killed, machine gone, paused);
a holder on this machine whose process is gone is taken over at once. Machines' clocks are never compared.

Fencing: a holder that cannot renew stops its work before the database would let another take over. It
counts its lease from the moment it *asked* for it, on this machine's boot clock (elapsed time only, which
goes on while the machine sleeps), less SAFETY_SECONDS: :func:`lease_held` turns False before the lease can
have expired in the database, whatever the two clocks say.
"""
from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.ledger.schema import from_iso
from pipeline.ledger.store import Store
from pipeline.ledger.leases import LOCK_NAME
from pipeline.outbox.alerts import local_time
from pipeline.runtime import boot_clock, district_key, holder_id, lease_held, serve_until

LEASE_SECONDS = 45.0
RENEW_SECONDS = 15.0
STANDBY_SECONDS = 5.0
SAFETY_SECONDS = 5.0
LOCKED_EXIT = 3
# The desk calls a worker silent after this long without a renewal (shown to people, never compared by workers).
LOCK_STALE_AFTER = timedelta(minutes=5)

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: somebody else's live process
        return True
    return True


class Lease:
    """The worker lease of one district (one config file), as this process sees it."""

    def __init__(self, cfg_path: str | Path, store: Store, seconds: float = LEASE_SECONDS) -> None:
        self.key = district_key(cfg_path)
        self.store = store
        self.seconds = seconds
        self.holder = holder_id()
        self.host = socket.gethostname()
        serve_until(self.key, 0.0)  # served by this process, not held yet: its jobs must not run

    @property
    def held(self) -> bool:
        return lease_held(self.key)

    def _hold(self, asked_at: float) -> None:
        serve_until(self.key, asked_at + self.seconds - SAFETY_SECONDS)

    def drop(self) -> None:
        """Stop working at once (the lease was lost): lease_held is False from now on."""
        serve_until(self.key, 0.0)

    def acquire(self, now: datetime | None = None) -> bool:
        """Take the lease if it is free, expired by the database's clock, or held by a dead process of this
        machine. ``now`` (this machine's clock) is only recorded in the row."""
        now = now or datetime.now(timezone.utc)
        pid = os.getpid()
        asked_at = boot_clock()
        won = self.store.acquire_lease(LOCK_NAME, self.holder, self.host, pid, self.seconds, now)
        if not won:
            row = self.store.lock_row(LOCK_NAME)
            if row is not None and row.host == self.host and row.pid != pid and not _pid_alive(row.pid):
                asked_at = boot_clock()
                won = self.store.take_over_lease(LOCK_NAME, row.holder, self.holder, self.host, pid, self.seconds, now)
        if won:
            self._hold(asked_at)
        return won

    def renew(self, now: datetime | None = None) -> bool:
        """Extend the lease; False when it is no longer ours (lease_held is False from then on). A database
        error is raised: the lease still counts until its local deadline, the caller tries again."""
        asked_at = boot_clock()
        if self.store.renew_lease(LOCK_NAME, self.holder, self.seconds, now or datetime.now(timezone.utc)):
            self._hold(asked_at)
            return True
        self.drop()
        return False

    def give_back(self) -> None:
        """Stop working and delete our row, so that a standby takes over at once; still served (standing by)."""
        self.drop()
        self.store.release_lease(LOCK_NAME, self.holder)

    def release(self) -> None:
        """Give the lease back (clean stop) and stop serving the district."""
        serve_until(self.key, None)
        self.store.release_lease(LOCK_NAME, self.holder)

    def holder_row(self) -> Any:
        return self.store.lock_row(LOCK_NAME)


def standby_message(row: Any, label: str, cfg: Config) -> str:
    """Logged when a worker starts standing by for a district, or its holder changes."""
    if row is None:
        return f"{label}: đang chờ (dự phòng), chưa giành được quyền xử lý; thử lại sau {int(STANDBY_SECONDS)} giây"
    return (
        f"{label}: đang chờ (dự phòng). Worker khác đang giữ quyền xử lý: máy {row.host}, pid {row.pid}, "
        f"từ {local_time(from_iso(row.acquired_at), cfg)}; quyền này hết hạn sau {max(0, int(row.seconds_left))} "
        "giây nếu nó không gia hạn, khi đó worker này tự tiếp quản. "
        f"(standing by: {row.holder} holds the worker lease)"
    )


def locked_message(row: Any, cfg: Config) -> str:
    """`intake run --no-wait` finding the district served by another worker."""
    if row is None:
        return "Không giành được khoá worker (một tiến trình khác vừa giành trước) / could not take the worker lock."
    return (
        f"Một tiến trình `intake run` khác đang phục vụ {cfg.organisation}: máy {row.host}, pid {row.pid}, "
        f"chạy từ {local_time(from_iso(row.acquired_at), cfg)}, "
        f"gia hạn gần nhất {local_time(from_iso(row.heartbeat_at), cfg)}.\n"
        "Mỗi quận chỉ một worker làm việc tại một thời điểm. Bỏ --no-wait để worker này chờ và tự tiếp quản "
        f"khi worker kia dừng (quyền xử lý hết hạn sau {int(LEASE_SECONDS)} giây không gia hạn).\n"
        f"another intake run (host {row.host}, pid {row.pid}) holds the worker lock for this district; exiting."
    )

