"""The ledger's schema versions (issue 11, point 6): a database made by the first release is refused until
`intake db upgrade`, which keeps every record and attaches it to the 2022 campaign; the revisions and
schema.py make the same tables.

tests/data/ledger-release-1.sqlite3 was made by the first release's own code (commit ed4202e) against a
real Dovecot and SMTP sink: see tests/data/make_ledger_release_1.py. Every check reads the files with
plain sqlite3 or the real CLI; nothing is mocked.
"""
from __future__ import annotations

import re
import shutil
import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from conftest import write_config
from pipeline import cli
from pipeline.errors import IntakeError, SchemaOutdated
from pipeline.ledger import migrate
from pipeline.ledger.schema import metadata
from pipeline.ledger.store import Store

FIXTURE = Path(__file__).parent / "data" / "ledger-release-1.sqlite3"
CAMPAIGN_TABLES = ("messages", "documents", "outbox", "reminders")

Rows = dict[str, list[dict[str, Any]]]


def read_all(path: Path) -> Rows:
    """Every row of every table, every column, by primary key (the first column of each table)."""
    with closing(sqlite3.connect(path)) as con:
        con.row_factory = sqlite3.Row
        names = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                           "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {t: [dict(r) for r in con.execute(f'SELECT * FROM "{t}" ORDER BY 1')] for t in names}


def ddl(path: Path) -> dict[tuple[str, str], str]:
    """The CREATE statements of the ledger's tables and indexes, whitespace folded."""
    with closing(sqlite3.connect(path)) as con:
        return {(kind, name): re.sub(r"\s+", " ", sql) for kind, name, sql in con.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' AND name != 'alembic_version'")}


def schema_differences(url: str, target: sa.MetaData) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return compare_metadata(MigrationContext.configure(c), target)
    finally:
        engine.dispose()


@pytest.fixture
def old_db(tmp_path: Path) -> tuple[Path, Path]:
    """A config (year 2022) whose database is a copy of the first release's ledger; (config, database)."""
    cfg = write_config(tmp_path, imap_port=143, smtp_port=25)
    db = tmp_path / "db" / "intake.sqlite3"
    db.parent.mkdir()
    shutil.copyfile(FIXTURE, db)
    return cfg, db


def run_cli(cfg: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = cli.main(["--config", str(cfg), *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_the_fixture_holds_what_the_first_release_recorded() -> None:
    rows = read_all(FIXTURE)
    assert "alembic_version" not in rows  # the first release had no version table
    assert {t: len(r) for t, r in rows.items() if r} == {
        "bounces": 1, "documents": 7, "entries": 5, "findings": 3, "messages": 8, "outbox": 15,
        "poll_state": 1, "reminders": 11, "review_actions": 3}
    assert {d["state"] for d in rows["documents"]} == {"accepted", "rejected"}
    assert {d["period"] for d in rows["documents"]} == {None, "2022-Q1", "2022-Y"}
    assert {m["state"] for m in rows["messages"]} == {"processed", "ignored"}
    assert {o["state"] for o in rows["outbox"]} == {"sent", "pending"}
    assert {o["purpose"] for o in rows["outbox"]} == {"reminder", "receipt"}
    assert any(r["outbox_id"] is None for r in rows["reminders"])  # a stage passed over
    assert {a["action"] for a in rows["review_actions"]} == {"assign", "accept", "ignore"}


def test_an_old_database_is_refused_until_intake_db_upgrade_which_loses_nothing(
        old_db: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    cfg, db = old_db
    url = f"sqlite:///{db}"
    before = read_all(db)

    with pytest.raises(SchemaOutdated, match=r"phiên bản cũ; chạy: intake db upgrade") as refused:
        Store(url)
    assert str(db) in str(refused.value)
    for command_line in (["status"], ["run"]):
        rc, out, err = run_cli(cfg, *command_line, capsys=capsys)
        assert rc == 2 and "intake db upgrade" in err and "Traceback" not in err, (command_line, out, err)
    rc, out, _ = run_cli(cfg, "db", "current", capsys=capsys)
    assert rc == 0 and "của phiên bản đầu tiên" in out and "chạy: intake db upgrade" in out
    assert read_all(db) == before  # refusing changed nothing

    rc, out, err = run_cli(cfg, "db", "upgrade", capsys=capsys)
    assert rc == 0, err
    assert f"Đã nâng cấp cơ sở dữ liệu {db} từ lược đồ của phiên bản đầu tiên lên {migrate.HEAD}" in out
    assert "năm 2022" in out
    after = read_all(db)

    assert set(after) == set(before) | {"alembic_version"}
    assert after["alembic_version"] == [{"version_num": migrate.HEAD}]
    for table, rows in before.items():
        kept = [{k: row[k] for k in rows[0]} for row in after[table]] if rows else after[table]
        assert kept == rows, table  # same count, every column of every row as it was
    for table in CAMPAIGN_TABLES:
        assert {r["campaign"] for r in after[table]} == {2022}, table
    assert {d["period"]: d["campaign"] for d in after["documents"]}["2022-Q1"] == 2022
    assert all(e["extra"] is None for e in after["entries"])

    rc, out, _ = run_cli(cfg, "db", "upgrade", capsys=capsys)
    assert rc == 0 and "không có gì thay đổi" in out
    assert read_all(db) == after
    rc, out, _ = run_cli(cfg, "db", "current", capsys=capsys)
    assert rc == 0 and f"lược đồ {migrate.HEAD} (mới nhất)" in out

    store = Store(url)  # today's code works on it
    records = store.document_records()
    assert sorted(r.document_id for r in records) == [d["id"] for d in before["documents"]]
    assert {r.campaign for r in records} == {2022}
    assert [r.document_id for r in store.document_records(2022)] == [r.document_id for r in records]
    assert store.document_records(2023) == []
    r0 = before["reminders"][0]
    assert (r0["unit_id"], r0["obligation_id"], r0["stage"]) in store.reminder_stages_sent(2022)
    now = datetime(2023, 2, 15, 2, 0, tzinfo=timezone.utc)
    assert store.record_reminder(r0["unit_id"], r0["obligation_id"], r0["stage"], None, now, campaign=2022) is False
    assert store.record_reminder(r0["unit_id"], r0["obligation_id"], r0["stage"], None, now, campaign=2023) is True
    assert store.reminder_stages_sent(2023) == {(r0["unit_id"], r0["obligation_id"], r0["stage"])}
    store.engine.dispose()


def test_rows_that_name_no_year_go_to_the_year_the_upgrade_is_given(old_db: tuple[Path, Path]) -> None:
    _, db = old_db
    assert migrate.upgrade(f"sqlite:///{db}", 2023) == migrate.Upgraded(None, migrate.HEAD)
    after = read_all(db)
    assert {(d["period"], d["campaign"]) for d in after["documents"]} == {
        (None, 2023), ("2022-Q1", 2022), ("2022-Y", 2022)}
    for table in ("messages", "outbox", "reminders"):
        assert {r["campaign"] for r in after[table]} == {2023}, table


def test_a_failed_upgrade_leaves_the_database_as_it_was(old_db: tuple[Path, Path]) -> None:
    _, db = old_db
    with closing(sqlite3.connect(db)) as con, con:  # an entry of a document that is not there
        con.execute("INSERT INTO entries (document_id, section, name, model, categories) "
                    "VALUES (999, 'I', 'x', 'y', '[]')")
    before = read_all(db)
    with pytest.raises(IntakeError, match="khóa ngoại"):
        migrate.upgrade(f"sqlite:///{db}", 2022)
    assert read_all(db) == before and ddl(db) == ddl(FIXTURE)
    with pytest.raises(SchemaOutdated):
        Store(f"sqlite:///{db}")


def test_a_new_database_is_made_at_the_newest_revision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, imap_port=143, smtp_port=25)
    db = tmp_path / "db" / "intake.sqlite3"
    rc, out, _ = run_cli(cfg, "db", "current", capsys=capsys)
    assert rc == 0 and "chưa có" in out and not db.exists()  # looking does not make it

    Store(f"sqlite:///{db}").engine.dispose()
    Store(f"sqlite:///{db}").engine.dispose()  # opened again: not stamped twice
    assert read_all(db)["alembic_version"] == [{"version_num": migrate.HEAD}]
    assert schema_differences(f"sqlite:///{db}", metadata) == []
    rc, out, _ = run_cli(cfg, "db", "current", capsys=capsys)
    assert rc == 0 and f"lược đồ {migrate.HEAD} (mới nhất)" in out
    rc, out, _ = run_cli(cfg, "db", "upgrade", capsys=capsys)
    assert rc == 0 and "không có gì thay đổi" in out

    memory = Store("sqlite:///:memory:")  # made on its own engine: another would see another database
    with memory.tx() as c:
        assert migrate.schema_state(c) == (migrate.HEAD, True)
    assert memory.document_records() == []


def test_the_revisions_replayed_from_nothing_make_the_tables_of_schema_py(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'replayed.sqlite3'}"
    engine = sa.create_engine(url)
    with engine.begin() as c:
        command.upgrade(migrate.alembic_config(c, campaign_year=2022), "0001")
    # 0001 is the first release's schema to the letter, and differs from today's (the comparison sees)
    assert ddl(tmp_path / "replayed.sqlite3") == ddl(FIXTURE)
    missing = {(d[0], d[3].name) for d in schema_differences(url, metadata) if d[0] == "add_column"}
    assert missing == {("add_column", "campaign"), ("add_column", "extra"), ("add_column", "duplicate_of"),
                       ("add_column", "expires_at"), ("add_column", "claimed_by")}
    with engine.begin() as c:
        command.upgrade(migrate.alembic_config(c, campaign_year=2022), "head")
    engine.dispose()
    assert schema_differences(url, metadata) == []


def test_the_downgrade_gives_back_the_first_release_schema_and_rows(old_db: tuple[Path, Path]) -> None:
    _, db = old_db
    url = f"sqlite:///{db}"
    before = read_all(db)
    migrate.upgrade(url, 2022)
    engine = sa.create_engine(url)
    with engine.begin() as c:
        command.downgrade(migrate.alembic_config(c), "0001")
    engine.dispose()
    first = sa.MetaData()
    fixture_engine = sa.create_engine(f"sqlite:///file:{FIXTURE}?mode=ro&uri=true")
    first.reflect(fixture_engine)
    fixture_engine.dispose()
    assert schema_differences(url, first) == []
    after = read_all(db)
    assert after.pop("alembic_version") == [{"version_num": "0001"}]
    assert after == before


def test_the_revisions_listed_in_migrate_are_those_in_versions() -> None:
    script = ScriptDirectory(str(migrate.MIGRATIONS))
    assert [s.revision for s in reversed(list(script.walk_revisions()))] == list(migrate.REVISIONS)
    assert script.get_current_head() == migrate.HEAD
