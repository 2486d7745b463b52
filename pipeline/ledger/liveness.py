"""The worker's own bookkeeping: key/value marks (last poll, failing since, alerts already sent) that
liveness checks read. The worker's lease is in leases.py.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from pipeline.ledger.db import Database
from pipeline.ledger.schema import iso, kv


class LivenessMixin(Database):
    # -- key/value (liveness, alerts) -------------------------------------------------------
    def get_kv(self, key: str) -> str | None:
        with self.tx() as c:
            return c.execute(sa.select(kv.c.value).where(kv.c.key == key)).scalar()

    def setdefault_kv(self, key: str, value: str, now: datetime) -> str:
        """The key's value, set to ``value`` first if it has none (of two processes doing this at once, one
        value wins and both read it)."""
        read = sa.select(kv.c.value).where(kv.c.key == key)
        with self.tx() as c:
            found = c.execute(read).scalar()
            if found is not None:  # every pass asks: only the first one writes (no refused insert each time)
                return str(found)
            try:
                with c.begin_nested():
                    c.execute(kv.insert().values(key=key, value=value, updated_at=iso(now)))
            except IntegrityError:
                pass
            return str(c.execute(read).scalar())

    def set_kv(self, key: str, value: str, now: datetime) -> None:
        with self.tx() as c:
            if not c.execute(kv.update().where(kv.c.key == key).values(value=value, updated_at=iso(now))).rowcount:
                c.execute(kv.insert().values(key=key, value=value, updated_at=iso(now)))
