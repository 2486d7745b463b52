"""The ledger's schema versions: what opening a database checks, and the upgrade (`intake db`, dbcli.py).

The tables are versioned with Alembic (migrations/ in this package, so an installed intake has them). A
new database gets today's tables at once (schema.py) and is stamped at the newest revision; a database at
an older revision, or made by the first release (which had no version table), is refused with
SchemaOutdated until `intake db upgrade` brings it forward. Alembic takes a noticeable part of a second to
import, so only making or changing a schema imports it: opening a database that is up to date (every
command, every job) reads the version table with SQLAlchemy alone.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sqlalchemy.exc import OperationalError

from pipeline.errors import IntakeError, SchemaOutdated, StoreBusy
from pipeline.ledger import backend
from pipeline.ledger.schema import metadata

if TYPE_CHECKING:
    from alembic.config import Config

    from pipeline.ledger.db import Database

MIGRATIONS = Path(__file__).with_name("migrations")
REVISIONS = ("0001", "0002", "0003", "0004")  # oldest first, as in migrations/versions (tests/test_migrations.py checks)
HEAD = REVISIONS[-1]
FIRST_RELEASE = "0001"  # what a database without a version table was made with
VERSION_TABLE = "alembic_version"


class Upgraded(NamedTuple):
    before: str | None  # None: the first release's schema (no version table), or ``created``
    after: str
    created: bool = False  # the database was empty: today's tables were made


def schema_state(conn: Connection) -> tuple[str | None, bool]:
    """The database's revision (None: no version table) and whether it holds any of the ledger's tables."""
    names = set(sa.inspect(conn).get_table_names())
    revision = None
    if VERSION_TABLE in names:
        rows = [r[0] for r in conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))]
        revision = rows[0] if len(rows) == 1 else ",".join(rows) or None
    return revision, bool(names & set(metadata.tables))


def ensure_schema(db: Database) -> None:
    """On open: nothing when the database is at the newest revision; a new (empty) database gets today's
    tables; anything else is refused, naming the command that upgrades it."""
    with db.tx() as c:
        revision, has_tables = schema_state(c)
    if revision == HEAD:
        return
    if revision is None and not has_tables:
        if _in_memory(db.url):  # private to this engine: nobody else can be making it
            with db.tx() as c:
                _create(c)
            return
        with _schema_transaction(db.url) as c:
            # another process may have made it meanwhile: look again under the write lock
            revision, has_tables = schema_state(c)
            if revision is None and not has_tables:
                _create(c)
                return
        if revision == HEAD:
            return
    raise SchemaOutdated(outdated_message(db.url, revision))


def outdated_message(url: str, revision: str | None) -> str:
    place = where(url)
    if revision is not None and revision not in REVISIONS:
        return (f"Cơ sở dữ liệu {place} được tạo bởi phiên bản mới hơn (lược đồ {revision}); hãy dùng phiên bản "
                f"intake mới hơn (the database was made by a newer version of intake, schema {revision})")
    return (f"Cơ sở dữ liệu {place} được tạo bởi phiên bản cũ; chạy: intake db upgrade "
            f"(the database was made by an older version of intake; run: intake db upgrade)")


def upgrade(url: str, campaign_year: int) -> Upgraded:
    """Bring the database to the newest revision in one transaction.

    Rows already there are attached to ``campaign_year`` (the configured year) where they name no year.
    A database at the newest revision is left alone; an empty one gets today's tables.
    """
    from alembic import command

    make_pg_schema(url)
    with _schema_transaction(url) as c:
        before, has_tables = schema_state(c)
        if before == HEAD:
            return Upgraded(before, HEAD)
        if before is None and not has_tables:
            _create(c)
            return Upgraded(None, HEAD, created=True)
        if before is not None and before not in REVISIONS:
            raise SchemaOutdated(outdated_message(url, before))
        cfg = alembic_config(c, campaign_year=campaign_year)
        if before is None:
            command.stamp(cfg, FIRST_RELEASE)
        command.upgrade(cfg, HEAD)
        return Upgraded(before, HEAD)


def current(url: str) -> tuple[str | None, bool]:
    """(revision, holds the ledger's tables) of the database; a SQLite file that does not exist is not made."""
    path = _sqlite_path(url)
    if path is not None and not path.is_file():
        return None, False
    engine = sa.create_engine(backend.normalised(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as c:
            return schema_state(c)
    finally:
        engine.dispose()


def _create(c: Connection) -> None:
    """Today's tables at once (no replay of every revision), stamped at the newest revision."""
    from alembic import command

    metadata.create_all(c)
    command.stamp(alembic_config(c), HEAD)


def alembic_config(c: Connection, **attributes: Any) -> Config:
    """Alembic's configuration for running the revisions on ``c``; ``attributes`` reach them (campaign_year)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = c  # env.py runs the revisions on it
    cfg.attributes.update(attributes)
    return cfg


def make_pg_schema(url: str) -> None:
    """The district's PostgreSQL schema, made if missing (under the schema lock: two processes starting
    on an empty database would otherwise both try to make it)."""
    schema = backend.schema_of(url)
    if schema is None:
        return
    exists = sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :s")
    with _schema_transaction(url) as c:
        # looked up first: CREATE SCHEMA IF NOT EXISTS needs the right to create even when it exists
        if c.execute(exists, {"s": schema}).first() is None:
            c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))


@contextmanager
def _schema_transaction(url: str) -> Iterator[Connection]:
    """One transaction holding the write lock for a whole schema change: the worker or the desk on the same
    database waits, and a failure anywhere leaves the database as it was. PostgreSQL has no database-wide
    write lock: an advisory lock named after the district's schema serialises its creation and upgrades
    (other districts on the same server go on)."""
    url = backend.normalised(url)
    sqlite = url.startswith("sqlite")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, **({"connect_args": {"timeout": 30}} if sqlite else {}))
    if sqlite:
        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite would run DDL outside any transaction; SQLAlchemy emits BEGIN itself instead
            dbapi_conn.isolation_level = None
            # batch mode drops and re-creates tables others may refer to; checked before commit instead
            dbapi_conn.execute("PRAGMA foreign_keys=OFF")

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock now, not at the first write

    try:
        with engine.connect() as c:  # closing it rolls back whatever was not committed
            try:
                c.begin()  # SQLite: waits up to 30 s for a pass or the desk to finish writing
            except OperationalError as exc:
                raise StoreBusy(f"database unavailable: {exc.orig}") from exc
            if engine.dialect.name == "postgresql":
                c.execute(sa.text("SET LOCAL statement_timeout = 0"))  # an upgrade may take its time
                c.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('intake-schema:' || :schema))"),
                          {"schema": backend.schema_of(url) or "public"})
            yield c
            if sqlite:
                broken = c.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise IntakeError(f"nâng cấp cơ sở dữ liệu bị hủy, không có gì thay đổi: khóa ngoại sai "
                                      f"(upgrade rolled back: foreign key check failed: {broken[:5]})")
            c.commit()
    finally:
        engine.dispose()


def _sqlite_path(url: str) -> Path | None:
    u = sa.engine.make_url(url)
    return Path(u.database) if u.get_backend_name() == "sqlite" and not _in_memory(url) else None


def _in_memory(url: str) -> bool:
    u = sa.engine.make_url(url)
    return u.get_backend_name() == "sqlite" and u.database in (None, "", ":memory:")


def where(url: str) -> str:
    """The database as people know it: its file, or its URL without the password."""
    path = _sqlite_path(url)
    return str(path) if path is not None else backend.where(url)

