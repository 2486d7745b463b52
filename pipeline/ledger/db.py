"""The connection to the ledger: engine options, the schema checked on open, one transaction at a time.

SQLAlchemy Core; SQLite by default, any SQLAlchemy URL works. The table groups of ``Store`` (in the
other modules of this package) build on ``Database`` and write only through ``tx()``.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from pipeline.errors import StoreBusy
from pipeline.ledger.migrate import ensure_schema


def engine_options(url: str) -> dict[str, Any]:
    """``create_engine`` keywords for the URL: SQLite waits for a lock instead of failing at once."""
    return {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}


class Database:
    def __init__(self, url: str) -> None:
        """A new database gets its tables; one at the newest schema revision opens; any other raises
        SchemaOutdated (``intake db upgrade`` changes it through an engine of its own, migrate.py)."""
        self.url = url
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = sa.create_engine(url, future=True, **engine_options(url))
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
