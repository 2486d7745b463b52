"""Workers that stand by and take over (issue 14, point 2): the worker lease expires by the database's clock;
a second `intake run` stands by and takes over within a minute when the first is killed or paused (a machine
gone); one worker process serves several districts, each district by one worker at a time.

Real `intake run` processes against real Dovecot and SMTP servers, on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import Harness, fresh_district, write_config
from test_idle import reg_mail
from workerproc import ROOT, Worker, running
from pipeline.config import load_config
from pipeline.ledger.schema import iso
from pipeline.ledger.store import Store
from pipeline.ledger.leases import LOCK_NAME
from pipeline.worker import lock

BACKENDS = ("sqlite", "postgresql")  # every test here runs on both (conftest.py)

UBND = "cdcs.ubnd@longbien.gov.vn"
STANDING_BY = "đang chờ (dự phòng)"
TAKEN = "worker lease taken"


@contextlib.contextmanager
def worker(*configs: Path) -> Iterator[Worker]:
    with running("run", *[a for c in configs for a in ("-c", str(c))], "--poll-seconds", "1") as w:
        yield w


def holder_pid(store: Store) -> int | None:
    row = store.lock_row(LOCK_NAME)
    return None if row is None else row.pid


def receipts_sent_once(store: Store, n: int) -> None:
    rows = store.outbox_rows("receipt")
    assert len(rows) == n and all(r.state == "sent" and r.attempts == 1 for r in rows), rows


# --------------------------------------------------------------------------- the lease, by the database's clock


def test_the_lease_is_judged_by_the_database_clock_alone(db_url: str) -> None:
    store = Store(db_url)
    here = datetime.now(timezone.utc)
    assert abs((store.database_now() - here).total_seconds()) < 5  # one machine here: the clocks agree
    ahead, behind = here + timedelta(days=365), here - timedelta(days=365)  # machines whose clocks are wrong
    # A holder whose clock runs a year ahead wrote its times in the future; its lease ran out by the database's
    # clock: a taker whose clock runs a year behind takes it.
    assert store.acquire_lease(LOCK_NAME, "fast:1:a", "fast", 1, -10, ahead)
    row = store.lock_row(LOCK_NAME)
    assert row.heartbeat_at == iso(ahead) and row.expired
    assert store.acquire_lease(LOCK_NAME, "slow:2:b", "slow", 2, lock.LEASE_SECONDS, behind)
    # A live lease is not taken by a machine whose clock says it is long stale.
    assert not store.acquire_lease(LOCK_NAME, "fast:1:a", "fast", 1, lock.LEASE_SECONDS, ahead)
    assert not store.renew_lease(LOCK_NAME, "fast:1:a", lock.LEASE_SECONDS, ahead)
    row = store.lock_row(LOCK_NAME)
    assert row.holder == "slow:2:b" and row.heartbeat_at == iso(behind)
    assert lock.LEASE_SECONDS - 2 <= row.seconds_left <= lock.LEASE_SECONDS
    # A two-second lease runs out two seconds later by the database's clock, whatever the holder's says.
    assert store.renew_lease(LOCK_NAME, "slow:2:b", 2, behind)
    assert not store.acquire_lease(LOCK_NAME, "fast:1:a", "fast", 1, lock.LEASE_SECONDS, ahead)
    time.sleep(3.1)
    assert store.lock_row(LOCK_NAME).expired
    assert not store.renew_lease(LOCK_NAME, "slow:2:b", lock.LEASE_SECONDS, behind)  # too late: stop work
    assert store.acquire_lease(LOCK_NAME, "fast:1:a", "fast", 1, lock.LEASE_SECONDS, ahead)
    assert store.lock_row(LOCK_NAME).holder == "fast:1:a"
    store.engine.dispose()


def test_a_lease_row_of_the_previous_version_counts_as_expired(db_url: str) -> None:
    """A worker of the version before leases left a row without ``expires_at`` (stop workers to upgrade)."""
    from pipeline.ledger.schema import locks

    store = Store(db_url)
    now = datetime.now(timezone.utc)
    with store.tx() as c:
        c.execute(locks.insert().values(name=LOCK_NAME, holder="old:1:x", host="old", pid=1,
                                        acquired_at=iso(now), heartbeat_at=iso(now), expires_at=None))
    assert store.lock_row(LOCK_NAME).expired
    assert store.acquire_lease(LOCK_NAME, "new:2:y", "new", 2, lock.LEASE_SECONDS, now)
    store.engine.dispose()


# --------------------------------------------------------------------------- standing by, taking over


def test_a_standby_takes_over_within_a_minute_after_the_worker_is_killed(intake: Harness) -> None:
    store = intake.ctx.store
    intake.deliver(reg_mail())
    with worker(intake.cfg_path) as first:
        intake.smtp.wait_for(1, timeout=60)
        with worker(intake.cfg_path) as second:
            second.wait_log(STANDING_BY)
            assert f"pid {first.pid}" in second.log and TAKEN not in second.log
            assert second.proc.poll() is None and holder_pid(store) == first.pid
            first.proc.kill()  # SIGKILL: no clean stop, the lease row stays behind
            first.proc.wait()
            killed = time.monotonic()
            intake.deliver(reg_mail())
            second.wait_log(TAKEN, timeout=60)
            intake.smtp.wait_for(2, timeout=max(1.0, 60 - (time.monotonic() - killed)))
            assert time.monotonic() - killed < 60, second.log
            assert holder_pid(store) == second.pid
            second.sigterm()
    assert store.lock_row(LOCK_NAME) is None  # given back on a clean stop
    assert [m.rcpt_tos for m in intake.smtp.messages] == [[UBND], [UBND]]
    receipts_sent_once(store, 2)


def test_a_paused_worker_is_taken_over_when_its_lease_expires_and_stops_its_work(intake: Harness) -> None:
    """SIGSTOP: the process lives on (its pid proves nothing) but renews nothing, as a machine that vanished;
    the standby takes over once the lease ran out by the database's clock; resumed, the old worker finds
    its lease lost, does no more work and stands by."""
    store = intake.ctx.store
    with worker(intake.cfg_path) as first:
        first.wait_log("poll: fetched")
        with worker(intake.cfg_path) as second:
            second.wait_log(STANDING_BY)
            first.proc.send_signal(signal.SIGSTOP)
            paused = time.monotonic()
            intake.deliver(reg_mail())
            second.wait_log(TAKEN, timeout=70)
            took = time.monotonic() - paused
            # not before the lease could have run out (renewed at most RENEW_SECONDS before the pause)
            assert lock.LEASE_SECONDS - lock.RENEW_SECONDS - 2 < took < 60, second.log
            intake.smtp.wait_for(1, timeout=30)
            assert holder_pid(store) == second.pid
            first.proc.send_signal(signal.SIGCONT)
            first.wait_log("lost the worker lease")
            first.wait_log(STANDING_BY)
            assert f"pid {second.pid}" in first.log
            intake.deliver(reg_mail())
            intake.smtp.wait_for(2, timeout=30)
            time.sleep(3)  # time enough for a wrongly working first worker to answer twice
            assert holder_pid(store) == second.pid
            first.sigterm()
            second.sigterm()
    assert len(intake.smtp.messages) == 2
    receipts_sent_once(store, 2)


# --------------------------------------------------------------------------- a pool of workers, many districts


def test_one_worker_serves_two_districts_and_another_stands_by_for_both(
        tmp_path: Path, dovecot: Any, smtp: Any, monkeypatch: pytest.MonkeyPatch,
        database: tuple[str, str] | None) -> None:
    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", dovecot.password)
    folders = {"a": "INBOX", "b": "QuanB"}  # one mailbox account, a folder per district
    paths = {}
    for name, folder in folders.items():
        (tmp_path / name).mkdir()
        db = database if database is None or name == "a" else (database[0], fresh_district())
        paths[name] = write_config(tmp_path / name, imap_port=dovecot.port, smtp_port=smtp.port, database=db,
                                   mailbox_extra={"folder": folder})
        dovecot.append(reg_mail(), folder=folder)
    stores = {name: Store(load_config(p).database_url) for name, p in paths.items()}
    try:
        with worker(paths["a"], paths["b"]) as first:
            smtp.wait_for(2, timeout=60)
            first.wait_log(TAKEN, 2)
            assert {n: holder_pid(s) for n, s in stores.items()} == {"a": first.pid, "b": first.pid}
            with worker(paths["a"], paths["b"]) as second:
                second.wait_log(STANDING_BY, 2)
                assert TAKEN not in second.log
                first.sigterm()  # leases given back: the standby takes both within its next tries
                second.wait_log(TAKEN, 2, timeout=30)
                assert {n: holder_pid(s) for n, s in stores.items()} == {"a": second.pid, "b": second.pid}
                for folder in folders.values():
                    dovecot.append(reg_mail(), folder=folder)
                smtp.wait_for(4, timeout=60)
                second.sigterm()
        for store in stores.values():  # each district answered its own mail, each once
            receipts_sent_once(store, 2)
            assert store.lock_row(LOCK_NAME) is None
        assert len(smtp.messages) == 4
    finally:
        for store in stores.values():
            store.engine.dispose()


def test_no_wait_leaves_a_served_district_to_its_worker(intake: Harness) -> None:
    with worker(intake.cfg_path) as first:
        first.wait_log(TAKEN)
        other = subprocess.run([sys.executable, "-m", "pipeline", "run", "-c", str(intake.cfg_path), "--no-wait"],
                               capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert other.returncode == lock.LOCKED_EXIT
        assert f"pid {first.pid}" in other.stderr and "--no-wait" in other.stderr
        assert holder_pid(intake.ctx.store) == first.pid
        first.sigterm()
