"""Leases: a named right held by one process at a time, that expires by the database's clock.

The row of ``locks`` names its holder (``host:pid:random``, unique per process start) and ``expires_at``,
written by the database itself (``db_time``): PostgreSQL's ``now()``, SQLite's ``'now'``. Whether a lease
has expired is decided in the same statement that takes it, on the database's clock only, so machines whose
clocks disagree never take a lease from a live holder nor keep one from a dead holder. ``heartbeat_at`` and
``acquired_at`` keep the holder's own clock: they are shown to people (the desk), never compared.

Times are ISO strings like the rest of the ledger (schema.iso): "YYYY-MM-DDTHH:MM:SS+00:00", UTC, whole
seconds, so they compare as strings on both backends.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from pipeline.ledger.db import Database
from pipeline.ledger.schema import from_iso, iso, locks

LOCK_NAME = "worker"  # the lease row of the district's worker


class db_time(FunctionElement[str]):
    """The database's clock ``seconds`` from now, as an ISO string in UTC (the format of schema.iso)."""

    type = sa.String()
    name = "db_time"
    inherit_cache = True

    def __init__(self, seconds: float = 0.0) -> None:
        super().__init__(sa.literal(float(seconds), sa.Float()))


@compiles(db_time)
def _db_time_other(element: db_time, compiler: Any, **kw: Any) -> str:
    raise CompileError(f"leases need SQLite or PostgreSQL, not {compiler.dialect.name}")


@compiles(db_time, "sqlite")
def _db_time_sqlite(element: db_time, compiler: Any, **kw: Any) -> str:
    seconds = compiler.process(list(element.clauses)[0], **kw)
    return f"strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', ({seconds}) || ' seconds')"


@compiles(db_time, "postgresql")
def _db_time_postgresql(element: db_time, compiler: Any, **kw: Any) -> str:
    seconds = compiler.process(list(element.clauses)[0], **kw)
    return (f"to_char((now() + CAST({seconds} AS double precision) * interval '1 second') AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"')")


def _upsert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _expired() -> Any:
    return sa.or_(locks.c.expires_at.is_(None), locks.c.expires_at <= db_time(0))


class LeaseMixin(Database):
    def database_now(self) -> datetime:
        """The database's clock (whole seconds, UTC): the only clock leases are judged by."""
        with self.tx() as c:
            return from_iso(c.execute(sa.select(db_time(0))).scalar_one())

    def lock_row(self, name: str) -> sa.Row[Any] | None:
        """The lease row, with ``expired`` (bool) and ``seconds_left`` judged by the database's clock."""
        with self.tx() as c:
            row = c.execute(sa.select(locks, db_time(0).label("db_now")).where(locks.c.name == name)).first()
        if row is None:
            return None
        return _Lease(row)

    def acquire_lease(self, name: str, holder: str, host: str, pid: int, seconds: float, now: datetime) -> bool:
        """Take the lease for ``seconds`` if nobody holds it, its holder's time ran out, or it is ours already:
        one statement (insert, or update where expired or ours), so of two takers exactly one wins.
        ``now`` (this machine's clock) is only recorded, never compared."""
        with self.tx() as c:
            insert = _upsert(c.dialect.name)
            stmt = insert(locks).values(name=name, holder=holder, host=host, pid=pid, acquired_at=iso(now),
                                        heartbeat_at=iso(now), expires_at=db_time(seconds))
            stmt = stmt.on_conflict_do_update(
                index_elements=[locks.c.name],
                set_={"holder": holder, "host": host, "pid": pid, "heartbeat_at": iso(now),
                      "acquired_at": sa.case((locks.c.holder == holder, locks.c.acquired_at), else_=iso(now)),
                      "expires_at": db_time(seconds)},
                where=sa.or_(_expired(), locks.c.holder == holder),
            ).returning(locks.c.holder)  # a row when inserted or updated (rowcount of an upsert varies by driver)
            return c.execute(stmt).first() is not None

    def take_over_lease(self, name: str, dead_holder: str, holder: str, host: str, pid: int, seconds: float,
                        now: datetime) -> bool:
        """Take the lease from ``dead_holder`` before it expires (its process is known to be gone): compare
        and set on the holder, so two takers never both win."""
        with self.tx() as c:
            return c.execute(locks.update().where(locks.c.name == name, locks.c.holder == dead_holder).values(
                holder=holder, host=host, pid=pid, acquired_at=iso(now), heartbeat_at=iso(now),
                expires_at=db_time(seconds))).rowcount == 1

    def renew_lease(self, name: str, holder: str, seconds: float, now: datetime) -> bool:
        """Extend our lease; False when it is no longer ours or already ran out (the holder must stop work:
        another may have taken it, or may any moment)."""
        with self.tx() as c:
            return c.execute(locks.update().where(
                locks.c.name == name, locks.c.holder == holder, sa.not_(_expired()),
            ).values(heartbeat_at=iso(now), expires_at=db_time(seconds))).rowcount == 1

    def release_lease(self, name: str, holder: str) -> bool:
        with self.tx() as c:
            return c.execute(locks.delete().where(locks.c.name == name, locks.c.holder == holder)).rowcount == 1


class _Lease:
    """A row of ``locks`` as read with the database's clock beside it."""

    def __init__(self, row: sa.Row[Any]) -> None:
        self.name: str = row.name
        self.holder: str = row.holder
        self.host: str = row.host
        self.pid: int = row.pid
        self.acquired_at: str = row.acquired_at
        self.heartbeat_at: str = row.heartbeat_at
        self.expires_at: str | None = row.expires_at
        self.db_now: datetime = from_iso(row.db_now)
        self.seconds_left: float = ((from_iso(self.expires_at) - self.db_now).total_seconds()
                                    if self.expires_at else 0.0)

    @property
    def expired(self) -> bool:
        return self.seconds_left <= 0
