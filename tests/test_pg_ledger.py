"""The ledger correct on PostgreSQL under concurrency (issue 14), on the private cluster (tests/pgserver.py).

Superseding is serialised per unit, kind and period (two writers at once leave exactly one current
document); processes opening a fresh district at once all come up (schema creation under an advisory
lock); a district's URL keeps it in its own schema; pool and timeouts come from config.
"""
from __future__ import annotations

import multiprocessing
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import fresh_district, write_config
from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.ledger import migrate
from pipeline.ledger.backend import district_url, schema_of
from pipeline.ledger.messages import RawRecord
from pipeline.ledger.outcomes import DocumentOutcome, OutcomeRecord
from pipeline.ledger.store import Store
from pipeline.model import DocumentReading

T0 = datetime(2022, 2, 14, 1, 0, tzinfo=timezone.utc)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _outcome(pk: int, name: str) -> OutcomeRecord:
    doc = DocumentOutcome(part="2", filename=name, content_type=XLSX, sha256="0" * 64, size=1, on_time=None,
                          reading=DocumentReading(kind="registration", period=None, state="accepted", format="xlsx",
                                                  campaign=2022))
    return OutcomeRecord(pk=pk, state="processed", reason=None, sender="a@b.vn", from_name=None, subject="s",
                         unit_id="u1", outcomes=(doc,), campaign=2022)


def test_two_writers_at_once_leave_exactly_one_current_document(pg_url: str) -> None:
    url = district_url(pg_url, fresh_district())
    first, second = Store(url), Store(url)  # two processes' engines
    [(pk1, _), (pk2, _)] = first.record_raw_batch(
        [RawRecord("<m1>", "1" * 64, None, 1, 1, T0), RawRecord("<m2>", "2" * 64, None, 2, 1, T0 + timedelta(1))],
        folder="INBOX", uidvalidity=1, last_uid=2, now=T0)
    # Both have inserted their document before either looks for the newest, and both have looked before
    # either marks the other: the overlap that READ COMMITTED alone turns into two current documents. With
    # the lock the second writer cannot look until the first has committed, so the second meeting point is
    # never reached by both: the first goes on after three seconds.
    inserted = threading.Barrier(2, timeout=10)
    looked = threading.Barrier(2, timeout=3)
    for store in (first, second):
        @sa.event.listens_for(store.engine, "after_cursor_execute")
        def _wait(conn, cursor, statement, *_args):  # noqa: ANN001, ANN202
            text = " ".join(statement.split()).upper()
            if text.startswith("INSERT INTO DOCUMENTS"):
                inserted.wait()
            elif text.startswith("SELECT DOCUMENTS.ID") and "ORDER BY DOCUMENTS.RECEIVED_AT DESC" in text:
                try:
                    looked.wait()
                except threading.BrokenBarrierError:
                    pass
    errors: list[BaseException] = []

    def record(store: Store, pk: int, name: str) -> None:
        try:
            store.record_outcomes([_outcome(pk, name)], T0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(first, pk1, "old.xlsx")),
               threading.Thread(target=record, args=(second, pk2, "new.xlsx"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    docs = [d for ds in first.snapshot()["documents"].values() for d in ds]
    current = [d.filename for d in docs if d.superseded_by is None]
    assert len(docs) == 2 and current == ["new.xlsx"]  # the newer mail's document counts
    for store in (first, second):
        store.engine.dispose()


def _open(url: str, start: multiprocessing.synchronize.Event, out: multiprocessing.Queue) -> None:
    start.wait(30)
    try:
        Store(url).engine.dispose()
        out.put("ok")
    except BaseException as exc:
        out.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_fresh_district_at_once_all_come_up(pg_url: str) -> None:
    url = district_url(pg_url, fresh_district())
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_open, args=(url, start, out)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert results == ["ok"] * 4
    assert migrate.current(url) == (migrate.HEAD, True)


def test_a_district_lives_in_its_own_schema_with_its_version_table(pg_url: str) -> None:
    a, b = fresh_district(), fresh_district()
    Store(district_url(pg_url, a)).engine.dispose()
    Store(district_url(pg_url, b)).engine.dispose()
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as c:
            tables = {(s, t) for s, t in c.execute(sa.text(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN (:a, :b)"),
                {"a": a, "b": b})}
            public = set(c.execute(sa.text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")).scalars())
    finally:
        engine.dispose()
    for schema in (a, b):
        assert {(schema, "messages"), (schema, "outbox"), (schema, "alembic_version")} <= tables
    assert public == set()  # nothing of any district lands in the shared schema


def test_config_district_pool_and_timeouts(tmp_path: Path, pg_url: str) -> None:
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    path = write_config(tmp_path, imap_port=1, smtp_port=2, database=(plain, "long_bien"),
                        extra={"storage": {"database": plain, "archive": "archive", "pool_size": 3,
                                           "max_overflow": 1, "statement_timeout": 5}})
    cfg = load_config(path)
    assert cfg.database_url.startswith("postgresql+psycopg://") and schema_of(cfg.database_url) == "long_bien"
    store = Store(cfg.database_url, cfg.storage)
    try:
        assert (store.engine.pool.size(), store.engine.pool._max_overflow) == (3, 1)
        with store.tx() as c:
            assert c.execute(sa.text("SELECT current_schema()")).scalar() == "long_bien"
            assert c.execute(sa.text("SHOW statement_timeout")).scalar() == "5s"
    finally:
        store.engine.dispose()
    bad = write_config(tmp_path, imap_port=1, smtp_port=2, database=(plain, "Long-Biên"))
    with pytest.raises(ConfigError, match="district"):
        load_config(bad)


def test_the_revisions_replayed_on_postgresql_make_the_tables_of_schema_py(pg_url: str) -> None:
    """`intake db upgrade` on PostgreSQL: a district at the first release's revision reaches the newest, and
    what the revisions made is what schema.py says (as tests/test_migrations.py checks on SQLite)."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from pipeline.ledger.schema import metadata

    url = district_url(pg_url, fresh_district())
    migrate.make_pg_schema(url)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            command.upgrade(migrate.alembic_config(c, campaign_year=2022), migrate.FIRST_RELEASE)
        assert migrate.current(url) == (migrate.FIRST_RELEASE, True)
        done = migrate.upgrade(url, 2022)
        assert (done.before, done.after, done.created) == (migrate.FIRST_RELEASE, migrate.HEAD, False)
        with engine.connect() as c:
            assert compare_metadata(MigrationContext.configure(c), metadata) == []
    finally:
        engine.dispose()
    fresh = district_url(pg_url, fresh_district())
    assert migrate.upgrade(fresh, 2022) == migrate.Upgraded(None, migrate.HEAD, created=True)
