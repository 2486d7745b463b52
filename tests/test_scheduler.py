"""The worker: schedule construction, the one-worker lock, liveness alerts, and `intake run` for real."""
from __future__ import annotations

import email
import os
import pickle
import signal
import socket
import subprocess
import sys
import time as _time
from datetime import datetime, timedelta, timezone
from email import policy
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import yaml
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from conftest import DISTRICT, Harness, write_config
from intake_demo import samplemail
from pipeline import runtime
from pipeline.ledger.leases import LOCK_NAME
from pipeline.worker import jobs, liveness, lock, schedule
from pipeline.config import load_config
from intake_demo import samples
from pipeline.ledger.store import Store
from pipeline.context import campaigns_of

BACKENDS = ("sqlite", "postgresql")  # the tests using the ledger run on both (conftest.py)

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UBND = "cdcs.ubnd@longbien.gov.vn"
ROOT = Path(__file__).resolve().parents[1]


def reg_mail(mid: str) -> bytes:
    xlsx = samples.registration_xlsx("Công đoàn cơ quan Ủy ban nhân dân quận Long Biên",
                                     [("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac")])
    return samplemail.gmail_message(UBND, DISTRICT, "Đăng ký Dân vận khéo", "Kính gửi LĐLĐ quận.",
                                    [("Biểu đăng ký.xlsx", xlsx, XLSX)], message_id=mid)


def set_worker(path: Path, **worker: Any) -> None:
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg.setdefault("worker", {}).update(worker)
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")


# --------------------------------------------------------------------------- schedule


def test_schedule_jobs_triggers_and_time_zone(tmp_path: Path, database: tuple[str, str] | None) -> None:
    path = write_config(tmp_path, imap_port=1, smtp_port=2, database=database,
                        extra={"worker": {"poll_minutes": 7, "reminder_hour": 9, "digest_weekday": "fri"}})
    cfg = load_config(path)
    now = datetime(2022, 2, 10, 3, 0, tzinfo=timezone.utc)
    sched = schedule.build_scheduler(cfg, path, now=now, scheduler_cls=schedule.background_cls())
    by_id = {j.id: j for j in sched.get_jobs()}
    assert set(by_id) == {"poll", "outbox", "remind", "digest", "report-after:registration", "report-after:report-q1",
                         "report-after:report-h1", "report-after:report-q3", "report-after:report-year"}
    poll = by_id["poll"]
    assert isinstance(poll.trigger, IntervalTrigger) and poll.trigger.interval == timedelta(minutes=7)
    assert poll.next_run_time == now  # a poll at start
    assert poll.func_ref == "pipeline.worker.jobs:job_poll" and poll.args == (str(path.resolve()),)
    outbox = by_id["outbox"]
    assert isinstance(outbox.trigger, IntervalTrigger) and outbox.trigger.interval == timedelta(minutes=1)
    remind = by_id["remind"]
    assert isinstance(remind.trigger, CronTrigger) and str(remind.trigger.timezone) == "Asia/Ho_Chi_Minh"
    fields = {f.name: str(f) for f in remind.trigger.fields}
    assert (fields["hour"], fields["minute"]) == ("9", "0")
    digest = {f.name: str(f) for f in by_id["digest"].trigger.fields}
    assert (digest["day_of_week"], digest["hour"], digest["minute"]) == ("fri", "9", "30")
    after = by_id["report-after:registration"]
    assert isinstance(after.trigger, DateTrigger)
    assert after.trigger.run_date == datetime(2022, 2, 23, 9, 30, tzinfo=TZ)
    assert after.args == (str(path.resolve()), "registration")
    assert all(j.coalesce and j.max_instances == 1 for j in by_id.values())
    assert by_id["remind"].misfire_grace_time == 12 * 3600
    assert str(sched.timezone) == "Asia/Ho_Chi_Minh"
    # The commendation list has no date: no report job. Long-past deadlines get none either.
    later = schedule.desired_jobs(cfg, path, campaigns_of(cfg)[cfg.year].obligations, datetime(2022, 7, 1, tzinfo=timezone.utc))
    assert [j.id for j in later if j.id.startswith("report-after")] == ["report-after:report-q3",
                                                                        "report-after:report-year"]


def test_jobs_persist_and_a_missed_run_is_kept_for_one_catch_up(tmp_path: Path,
                                                              database: tuple[str, str] | None) -> None:
    path = write_config(tmp_path, imap_port=1, smtp_port=2, database=database)
    cfg = load_config(path)
    sched = schedule.build_scheduler(cfg, path, scheduler_cls=schedule.background_cls())
    sched.start(paused=True)
    sched.shutdown(wait=True)
    stored = schedule.persisted_jobs(cfg.database_url)
    assert {"poll", "remind", "digest"} <= set(stored)
    # Simulate downtime: the stored next run of "remind" is two hours ago.
    missed = datetime.now(timezone.utc) - timedelta(hours=2)
    engine = sa.create_engine(cfg.database_url)
    with engine.begin() as c:
        c.execute(sa.text("UPDATE apscheduler_jobs SET next_run_time=:t WHERE id='remind'"), {"t": missed.timestamp()})
        c.execute(sa.text("INSERT INTO apscheduler_jobs (id, next_run_time, job_state) VALUES ('old-job', NULL, :s)"),
                  {"s": b"junk"})
    engine.dispose()
    again = schedule.build_scheduler(cfg, path, scheduler_cls=schedule.background_cls())
    by_id = {j.id: j for j in again.get_jobs()}
    assert abs((by_id["remind"].next_run_time - missed).total_seconds()) < 1
    assert "old-job" not in schedule.persisted_jobs(cfg.database_url)
    # A changed trigger starts afresh.
    set_worker(path, reminder_hour=10)
    third = schedule.build_scheduler(load_config(path), path, scheduler_cls=schedule.background_cls())
    assert getattr({j.id: j for j in third.get_jobs()}["remind"], "next_run_time", None) is None  # computed at start


def test_jobs_stored_by_an_older_version_are_replaced_and_keep_their_missed_run(
        tmp_path: Path, database: tuple[str, str] | None) -> None:
    """The job store keeps "module:function"; the job functions lived in pipeline.scheduler before the regroup."""
    path = write_config(tmp_path, imap_port=1, smtp_port=2, database=database)
    cfg = load_config(path)
    sched = schedule.build_scheduler(cfg, path, scheduler_cls=schedule.background_cls())
    sched.start(paused=True)
    sched.shutdown(wait=True)
    missed = datetime.now(timezone.utc) - timedelta(hours=2)
    engine = sa.create_engine(cfg.database_url)
    with engine.begin() as c:
        for job_id, blob in c.execute(sa.text("SELECT id, job_state FROM apscheduler_jobs")).all():
            state = pickle.loads(blob)
            assert state["func"].startswith("pipeline.worker.jobs:")
            state["func"] = state["func"].replace("pipeline.worker.jobs:", "pipeline.scheduler:")
            c.execute(sa.text("UPDATE apscheduler_jobs SET job_state=:s WHERE id=:i"),
                      {"s": pickle.dumps(state), "i": job_id})
        c.execute(sa.text("UPDATE apscheduler_jobs SET next_run_time=:t WHERE id='remind'"), {"t": missed.timestamp()})
    again = schedule.build_scheduler(cfg, path, scheduler_cls=schedule.background_cls())
    again.start(paused=True)
    try:
        # Read back from the store: a job whose callable no longer resolves would be dropped here.
        by_id = {j.id: j for j in again.get_jobs()}
    finally:
        again.shutdown(wait=True)
    assert {"poll", "remind", "digest"} <= set(by_id)
    assert {j.func_ref.partition(":")[0] for j in by_id.values()} == {"pipeline.worker.jobs"}
    assert abs((by_id["remind"].next_run_time - missed).total_seconds()) < 1
    with engine.connect() as c:
        stored = [pickle.loads(b)["func"] for b in c.execute(sa.text("SELECT job_state FROM apscheduler_jobs")).scalars()]
    engine.dispose()
    assert stored and all(f.startswith("pipeline.worker.jobs:") for f in stored)


# --------------------------------------------------------------------------- lock


def test_one_worker_lease(tmp_path: Path, database: tuple[str, str] | None) -> None:
    cfg_path = write_config(tmp_path, imap_port=1, smtp_port=2, database=database)
    store = Store(load_config(cfg_path).database_url)
    ours = lock.Lease(cfg_path, store)
    assert not runtime.lease_held(cfg_path)  # served by this process, not held yet: no job may run
    assert ours.acquire() and runtime.lease_held(cfg_path)
    row = store.lock_row(LOCK_NAME)
    assert row.holder == runtime.holder_id() and row.pid == os.getpid() and row.host == socket.gethostname()
    assert lock.LEASE_SECONDS - 2 <= row.seconds_left <= lock.LEASE_SECONDS and not row.expired
    assert "intake run" in lock.locked_message(row, load_config(cfg_path))
    # Another process cannot take a live lease; once it expires (by the database's clock) it can, and the
    # old holder learns it at its next renewal and stops at once.
    now = datetime.now(timezone.utc)
    assert not store.acquire_lease(LOCK_NAME, "other:1:x", "other", 1, lock.LEASE_SECONDS, now)
    assert ours.renew() and runtime.lease_held(cfg_path)
    store.acquire_lease(LOCK_NAME, ours.holder, "h", os.getpid(), -1, now)  # ours, already run out
    assert store.acquire_lease(LOCK_NAME, "other:1:x", "other", 1, lock.LEASE_SECONDS, now)
    assert ours.renew() is False and not runtime.lease_held(cfg_path)
    assert store.release_lease(LOCK_NAME, "other:1:x")
    # A holder on this host whose process is gone is taken over at once, lease or no lease.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert store.acquire_lease(LOCK_NAME, "ghost", socket.gethostname(), dead.pid, 3600, now)
    assert ours.acquire() and store.lock_row(LOCK_NAME).holder == ours.holder
    ours.release()
    assert store.lock_row(LOCK_NAME) is None and runtime.lease_held(cfg_path)  # no longer served here
    store.engine.dispose()


# --------------------------------------------------------------------------- liveness


def staff_mail(h: Harness) -> list[email.message.EmailMessage]:
    out = []
    for m in h.smtp.messages:
        if "staff@example.org" in m.rcpt_tos:
            out.append(email.message_from_bytes(m.raw, policy=policy.default))
    return out


def test_poll_failure_alerts_once_and_once_on_recovery(intake: Harness) -> None:
    path = intake.cfg_path
    t0 = datetime(2022, 5, 2, 1, 0, tzinfo=timezone.utc)
    jobs.run_job("poll", path, t0)
    store = intake.ctx.store
    assert store.get_kv("poll.last_ok") == t0.isoformat()
    good = path.read_text(encoding="utf-8")
    cfg = yaml.safe_load(good)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    cfg["mailbox"]["port"] = closed
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    for minutes in (5, 30, 59):
        assert "LỖI" in jobs.run_job("poll", path, t0 + timedelta(minutes=minutes))
    assert staff_mail(intake) == []
    jobs.run_job("poll", path, t0 + timedelta(minutes=66))
    jobs.run_job("poll", path, t0 + timedelta(minutes=90))
    [alert] = staff_mail(intake)
    assert "không đọc được hộp thư" in alert["Subject"]
    body = alert.get_body(("plain",)).get_content()
    assert "Mật khẩu ứng dụng" in body and str(closed) in body and "Lỗi gần nhất" in body
    path.write_text(good, encoding="utf-8")
    jobs.run_job("poll", path, t0 + timedelta(minutes=95))
    jobs.run_job("poll", path, t0 + timedelta(minutes=100))
    mails = staff_mail(intake)
    assert len(mails) == 2 and "trở lại" in mails[1]["Subject"]
    assert [o.purpose for o in store.outbox_rows()] == ["alert", "alert"]


def test_quiet_mailbox_before_a_deadline_alerts_once(intake: Harness) -> None:
    path = intake.cfg_path
    intake.deliver(reg_mail("<q1@mail.gmail.com>"), datetime(2022, 2, 10, 9, 0, tzinfo=TZ))
    jobs.run_job("poll", path, datetime(2022, 2, 11, 2, 0, tzinfo=timezone.utc))
    assert staff_mail(intake) == []  # the receipt went to the unit
    jobs.run_job("poll", path, datetime(2022, 2, 14, 2, 0, tzinfo=timezone.utc))  # 8 days before: too early
    assert staff_mail(intake) == []
    jobs.run_job("poll", path, datetime(2022, 2, 16, 2, 0, tzinfo=timezone.utc))
    jobs.run_job("poll", path, datetime(2022, 2, 17, 2, 0, tzinfo=timezone.utc))
    [quiet] = staff_mail(intake)
    assert "22/02/2022" in quiet["Subject"]
    assert "bộ lọc" in quiet.get_body(("plain",)).get_content()
    intake.deliver(reg_mail("<q2@mail.gmail.com>"), datetime(2022, 2, 17, 10, 0, tzinfo=TZ))
    jobs.run_job("poll", path, datetime(2022, 2, 17, 4, 0, tzinfo=timezone.utc))
    jobs.run_job("poll", path, datetime(2022, 2, 18, 4, 0, tzinfo=timezone.utc))
    mails = staff_mail(intake)
    assert len(mails) == 2 and "thư mới trở lại" in mails[1]["Subject"]


def test_a_receipt_held_by_the_sending_limit_leaves_with_the_next_minutes_outbox_job(intake: Harness) -> None:
    """At smtp.per_minute 1, two mails: one receipt goes with the pass, the other with the outbox job a
    minute later, not at the next poll (minutes away); the job sends nothing twice."""
    data = yaml.safe_load(intake.cfg_path.read_text(encoding="utf-8"))
    data["smtp"]["per_minute"] = 1
    intake.cfg_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    intake.deliver(reg_mail("<limit-1@mail.gmail.com>"))
    intake.deliver(reg_mail("<limit-2@mail.gmail.com>"))
    t0 = datetime.now(timezone.utc)
    assert "new 2" in jobs.run_job("poll", intake.cfg_path, clock=lambda: t0)
    assert len(intake.smtp.messages) == 1
    assert jobs.run_job("outbox", intake.cfg_path, clock=lambda: t0 + timedelta(seconds=10)) != "nothing waiting"
    assert len(intake.smtp.messages) == 1  # still inside the minute: it waits
    later = t0 + timedelta(seconds=61)
    jobs.run_job("outbox", intake.cfg_path, clock=lambda: later)
    assert len(intake.smtp.messages) == 2
    replied = sorted(email.message_from_bytes(m.raw, policy=policy.default)["In-Reply-To"] for m in intake.smtp.messages)
    assert replied == ["<limit-1@mail.gmail.com>", "<limit-2@mail.gmail.com>"]
    assert jobs.run_job("outbox", intake.cfg_path, clock=lambda: later + timedelta(minutes=5)) == "nothing waiting"
    assert len(intake.smtp.messages) == 2


def test_jobs_remind_digest_and_deadline_report_send_once(intake: Harness) -> None:
    path = intake.cfg_path
    now = datetime(2022, 2, 23, 2, 30, tzinfo=timezone.utc)  # 09:30 on 23/02 in Hà Nội
    jobs.run_job("remind", path, now)
    jobs.run_job("remind", path, now + timedelta(hours=1))
    assert len([o for o in intake.ctx.store.outbox_rows("reminder")]) == 5
    jobs.run_job("digest", path, now)
    jobs.run_job("digest", path, now + timedelta(days=1))  # same ISO week
    jobs.run_job("report-after", path, now, obligation_id="registration")
    jobs.run_job("report-after", path, now + timedelta(hours=3), obligation_id="registration")
    reports = intake.ctx.store.outbox_rows("report")
    assert [r.key for r in reports] == ["report:weekly:2022-W08", "report:deadline:2022:registration"]
    assert all(r.state == "sent" for r in reports)
    [mail] = [m for m in staff_mail(intake) if "Tổng hợp" in m["Subject"]][:1]
    [att] = list(mail.iter_attachments())
    assert att.get_filename() == "bao-cao-tong-hop-2022-02-23.xlsx"
    assert (path.parent / "reports" / "bao-cao-tong-hop-2022-02-24.xlsx").is_file()


# --------------------------------------------------------------------------- the real worker


def _start(path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pipeline", "--config", str(path), "run", "--poll-seconds", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _wait_kv_after(store: Store, key: str, after: datetime, timeout: float = 30) -> None:
    deadline = _time.monotonic() + timeout
    while _time.monotonic() < deadline:
        value = store.get_kv(key)
        if value and datetime.fromisoformat(value) > after:
            return
        _time.sleep(0.2)
    raise TimeoutError(f"{key} not updated after {after}")


def test_intake_run_subprocess_lock_sigterm_restart(intake: Harness) -> None:
    env = {**os.environ}
    intake.deliver(reg_mail("<run-1@mail.gmail.com>"), datetime(2022, 2, 18, 9, 0, tzinfo=TZ))
    first = _start(intake.cfg_path, env)
    try:
        intake.smtp.wait_for(1, timeout=60)
        [receipt] = intake.smtp.messages
        assert receipt.rcpt_tos == [UBND]
        second = subprocess.run([sys.executable, "-m", "pipeline", "--config", str(intake.cfg_path), "run",
                                 "--no-wait", "--poll-seconds", "1"],
                                env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert second.returncode == lock.LOCKED_EXIT
        assert "intake run" in second.stderr and f"pid {first.pid}" in second.stderr
        assert first.poll() is None
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
        assert "worker stopped cleanly" in err and "poll: fetched 1, new 1" in err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert intake.ctx.store.lock_row(LOCK_NAME) is None
    assert {"poll", "remind", "digest"} <= set(schedule.persisted_jobs(intake.ctx.cfg.database_url))

    # Restarted: polls again (nothing new), sends nothing twice; a crash-killed worker's lock is taken over.
    started = datetime.now(timezone.utc)
    again = _start(intake.cfg_path, env)
    try:
        _wait_kv_after(intake.ctx.store, "poll.last_ok", started)
        _time.sleep(1.5)
        again.kill()  # no clean shutdown this time: the lock stays behind
        again.wait(timeout=30)
    finally:
        if again.poll() is None:
            again.kill()
            again.wait()
    assert intake.ctx.store.lock_row(LOCK_NAME) is not None
    started = datetime.now(timezone.utc)
    third = _start(intake.cfg_path, env)
    try:
        _wait_kv_after(intake.ctx.store, "poll.last_ok", started)
        third.send_signal(signal.SIGINT)
        _out, err = third.communicate(timeout=60)
        assert third.returncode == 0, err
    finally:
        if third.poll() is None:
            third.kill()
            third.wait()
    assert len(intake.smtp.messages) == 1
    assert [o.state for o in intake.ctx.store.outbox_rows()] == ["sent"]


def test_the_failure_alert_gives_the_oauth_hint_when_the_mailbox_uses_xoauth2(intake: Harness) -> None:
    import dataclasses

    ctx = intake.ctx
    t0 = datetime(2022, 5, 2, 1, 0, tzinfo=timezone.utc)
    ctx.cfg = dataclasses.replace(ctx.cfg, mailbox=dataclasses.replace(ctx.cfg.mailbox, auth="xoauth2"))
    liveness.check_liveness(ctx, t0, "refresh token bị thu hồi")
    liveness.check_liveness(ctx, t0 + timedelta(minutes=61), "refresh token bị thu hồi")
    [row] = [o for o in ctx.store.outbox_rows() if o.purpose == "alert"]
    body = email.message_from_bytes(row.raw, policy=policy.default).get_body(("plain",)).get_content()
    assert "refresh token" in body and "python -m pipeline.oauth" in body and "Mật khẩu ứng dụng" not in body


def test_jobs_run_one_at_a_time_whoever_starts_them(intake: Harness) -> None:
    """The IDLE thread and the schedule's thread both call run_job: a second job waits for the first."""
    import threading

    intake.deliver(reg_mail("<one-at-a-time@mail.gmail.com>"), datetime(2022, 2, 18, 9, 0, tzinfo=TZ))
    done: list[str] = []
    with runtime.job_lock(intake.cfg_path):  # a job of this district in hand
        t = threading.Thread(target=lambda: done.append(jobs.run_job("poll", intake.cfg_path)))
        t.start()
        t.join(timeout=1.0)
        assert t.is_alive() and done == [] and not intake.ctx.store.get_kv("poll.last_ok")
    t.join(timeout=60)
    assert not t.is_alive() and "fetched 1, new 1" in done[0]
    assert intake.ctx.store.get_kv("poll.last_ok")
