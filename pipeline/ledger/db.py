"""The connection to the ledger: engine options, the schema checked on open, one transaction at a time.

SQLAlchemy Core; SQLite by default, PostgreSQL for a city of districts on one server (backend.py: the
URL, the district's schema, the pool). The table groups of ``Store`` (in the other modules of this package)
build on ``Database`` and write only through ``tx()``.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from pipeline.errors import StoreBusy
from pipeline.ledger.backend import StorageOptions, engine_options, is_postgresql, normalised
from pipeline.ledger.migrate import ensure_schema, make_pg_schema


def serialise(conn: Connection, *parts: object) -> None:
    """Writers of the same thing (e.g. one unit's documents of a kind and period) wait for each other until
    the transaction ends. PostgreSQL under READ COMMITTED would let two of them each see only their own new
    row; a transaction-level advisory lock, keyed by the district (its schema) and ``parts``, orders them.
    SQLite needs nothing: it has one writer at a time."""
    if conn.dialect.name != "postgresql":
        return
    key = ":".join("" if p is None else str(p) for p in parts)
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':' || :key))"), {"key": key})


class Database:
    def __init__(self, url: str, options: StorageOptions = StorageOptions()) -> None:
        """A new database gets its tables; one at the newest schema revision opens; any other raises
        SchemaOutdated (``intake db upgrade`` changes it through an engine of its own, migrate.py)."""
        url = normalised(url)
        self.url = url
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            path = Path(url[len("sqlite:///"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() and not sa.engine.make_url(url).query:  # (a file: URI opens what exists)
                # names and addresses of people: readable by the service's user only, whatever the umask
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
                os.chmod(path, 0o600)
        elif is_postgresql(url):
            make_pg_schema(url)  # before the pool's first connection, so that its search_path finds it
        self.engine: Engine = sa.create_engine(url, future=True, **engine_options(url, options))
        if url.startswith("sqlite"):
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:  # pragma: no cover - trivial
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()
        ensure_schema(self)

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """One transaction; a locked or unreachable database becomes StoreBusy (temporary)."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise StoreBusy(f"database unavailable: {exc.orig}") from exc
