"""Which database the ledger is on, and how every connection to it is made.

SQLite is one file per district. PostgreSQL holds many districts in one database, one schema each: the
schema is the district's ``search_path``, a startup parameter carried in the URL (``options=-c
search_path=…``), so every connection made from the URL is in its district's schema, whoever makes it (the
ledger, ``intake db``, APScheduler's job store, the tests). Unqualified table names, Alembic's version
table included, then follow the district without any code knowing about districts.

The URL people write may say ``postgresql://``; the driver is psycopg 3 (``postgresql+psycopg://``), and
this module is the one place that knows.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

DISTRICT = re.compile(r"[a-z][a-z0-9_]{0,40}")
DEFAULT_DISTRICT = "intake"


@dataclass(frozen=True)
class StorageOptions:
    """The connection pool and timeouts (config.yaml ``storage``); the pool options matter on PostgreSQL."""

    pool_size: int = 5             # connections kept open per process
    max_overflow: int = 2          # extra connections in a rush, closed when returned
    pool_timeout: float = 30.0     # seconds to wait for a free connection before failing
    connect_timeout: int = 10      # seconds to reach the server
    statement_timeout: float = 60.0  # seconds one statement may run (PostgreSQL); 0: no limit


def is_postgresql(url: str) -> bool:
    return sa.engine.make_url(url).get_backend_name() == "postgresql"


def normalised(url: str) -> str:
    """A PostgreSQL URL with the psycopg driver whatever driver it named (or none); others unchanged."""
    u = sa.engine.make_url(url)
    if u.get_backend_name() != "postgresql" or u.drivername == "postgresql+psycopg":
        return url
    return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def district_url(url: str, district: str, options: StorageOptions = StorageOptions()) -> str:
    """The URL every connection of this district uses: on PostgreSQL with the psycopg driver, the district's
    schema as search_path, and the timeouts; a SQLite URL is returned as it is (a file per district)."""
    u = sa.engine.make_url(url)
    if u.get_backend_name() != "postgresql":
        return url
    if not DISTRICT.fullmatch(district):
        raise ValueError(f"district {district!r}: must match {DISTRICT.pattern}")
    query = dict(u.query)
    startup = [f"-c search_path={district}"]
    if options.statement_timeout:
        startup.append(f"-c statement_timeout={int(options.statement_timeout * 1000)}")
    given = query.get("options")
    query["options"] = " ".join(([given] if isinstance(given, str) and given else []) + startup)
    query.setdefault("connect_timeout", str(options.connect_timeout))
    return normalised(u.update_query_dict(query).render_as_string(hide_password=False))


def schema_of(url: str) -> str | None:
    """The district's schema a PostgreSQL URL names (the last search_path in its options); None otherwise."""
    u = sa.engine.make_url(url)
    if u.get_backend_name() != "postgresql":
        return None
    options = u.query.get("options")
    found = re.findall(r"-c\s*search_path=([a-z][a-z0-9_]*)", options if isinstance(options, str) else "")
    return found[-1] if found else None


def engine_options(url: str, options: StorageOptions = StorageOptions()) -> dict[str, Any]:
    """``create_engine`` keywords: SQLite waits for a lock instead of failing at once; PostgreSQL gets the
    configured pool (a pool per process: workers × (pool_size + max_overflow) must fit the server's
    max_connections, or PgBouncer's pool)."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}}
    return {"pool_size": options.pool_size, "max_overflow": options.max_overflow,
            "pool_timeout": options.pool_timeout, "pool_pre_ping": True}


def where(url: str) -> str:
    """A PostgreSQL database as people know it: its URL without the password and the startup options."""
    u = sa.engine.make_url(url)
    schema = schema_of(url)
    query = {k: v for k, v in u.query.items() if k not in ("options", "connect_timeout")}
    shown = u.set(drivername=u.get_backend_name()).set(query=query).render_as_string(hide_password=True)
    return f"{shown} (district {schema})" if schema else shown
