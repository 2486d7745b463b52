"""The worker's own bookkeeping: the lock that keeps one worker per database, and key/value marks
(last poll, failing since, alerts already sent) that liveness checks read.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from pipeline.ledger.db import Database
from pipeline.ledger.schema import iso, kv, locks


class LivenessMixin(Database):
    # -- key/value (liveness, alerts) -------------------------------------------------------
    def get_kv(self, key: str) -> str | None:
        with self.tx() as c:
            return c.execute(sa.select(kv.c.value).where(kv.c.key == key)).scalar()

    def set_kv(self, key: str, value: str, now: datetime) -> None:
        with self.tx() as c:
            if not c.execute(kv.update().where(kv.c.key == key).values(value=value, updated_at=iso(now))).rowcount:
                c.execute(kv.insert().values(key=key, value=value, updated_at=iso(now)))

    # -- locks (one worker per database) ----------------------------------------------------
    def lock_row(self, name: str) -> sa.Row[Any] | None:
        with self.tx() as c:
            return c.execute(sa.select(locks).where(locks.c.name == name)).first()

    def acquire_lock(self, name: str, holder: str, host: str, pid: int, now: datetime,
                     can_take: Callable[[sa.Row[Any]], bool]) -> tuple[bool, sa.Row[Any] | None]:
        """Take the named lock; an existing holder's row is taken over only when ``can_take(row)``
        (stale heartbeat, dead process). Compare-and-set on the old holder and heartbeat, so two
        starters never both win. Returns (won, the row that blocked us)."""
        with self.tx() as c:
            try:
                with c.begin_nested():
                    c.execute(locks.insert().values(name=name, holder=holder, host=host, pid=pid,
                                                    acquired_at=iso(now), heartbeat_at=iso(now)))
                return True, None
            except IntegrityError:
                pass
            row = c.execute(sa.select(locks).where(locks.c.name == name)).first()
            if row is None:
                return False, None
            if row.holder != holder and not can_take(row):
                return False, row
            won = c.execute(locks.update().where(
                locks.c.name == name, locks.c.holder == row.holder, locks.c.heartbeat_at == row.heartbeat_at,
            ).values(holder=holder, host=host, pid=pid, acquired_at=iso(now), heartbeat_at=iso(now))).rowcount == 1
            return won, (None if won else row)

    def heartbeat_lock(self, name: str, holder: str, now: datetime) -> bool:
        """False when the lock is no longer ours (taken over after we looked stale)."""
        with self.tx() as c:
            return c.execute(locks.update().where(locks.c.name == name, locks.c.holder == holder)
                             .values(heartbeat_at=iso(now))).rowcount == 1

    def release_lock(self, name: str, holder: str) -> bool:
        with self.tx() as c:
            return c.execute(locks.delete().where(locks.c.name == name, locks.c.holder == holder)).rowcount == 1
