"""The worker (`intake run`): the schedule, one worker per database, liveness alerts.

APScheduler 3.x ``BlockingScheduler`` in the configured time zone, with its jobs persisted in the
same database (``SQLAlchemyJobStore``, table ``apscheduler_jobs``): a run missed while the worker
was down fires once on restart (coalesced) when it is within the job's grace time, never once per
missed occurrence. Jobs are module-level functions taking the config path, so the job store holds
only a textual reference and a string.

Jobs: ``poll`` every ``worker.poll_minutes`` (and once at start); ``remind`` daily at
``worker.reminder_hour``; ``digest`` weekly on ``worker.digest_weekday`` (the report mailed to
staff); ``report-after:<obligation>`` on the day after each obligation's due date. Every job is
idempotent by itself (reminder stages and report occasions are unique keys), so a job run twice
sends nothing twice.

One worker per database: a row in ``locks`` with holder, host, pid and a heartbeat every
HEARTBEAT_SECONDS. A second ``intake run`` finds a live holder, says so and exits with status 3. A
holder whose heartbeat is older than LOCK_STALE_AFTER (e.g. a machine that died), or whose pid no
longer exists on this host (a killed process), is taken over. Works with any SQLAlchemy URL.

Receipts in seconds: where the server offers IMAP IDLE (``worker.idle``, on by default), a thread
of the worker waits for new mail and runs the poll job at once (idle.py). Every job, scheduled or
started by IDLE, runs under one lock (:func:`run_job`): two passes never run at once, and a poll and
a reminder never interleave their outbox flushes. The scheduled poll stays, as the fallback where
IDLE is missing or failing.

SIGTERM / SIGINT: no new job starts, the job in hand finishes (``shutdown(wait=True)``), the lock
is released, exit status 0.

Liveness: each successful poll is recorded (kv ``poll.last_ok``). When polls have failed for
``worker.alert_after_minutes``, staff get ONE alert saying what is wrong and what to check, and
one more when polling recovers. When polls succeed but no mail has arrived for
``worker.quiet_alert_days`` while a deadline is at most ``worker.quiet_days_before_deadline`` days
away, staff get one alert for that deadline (and one when mail arrives again).
"""
from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import sys
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import sqlalchemy as sa

from pipeline.config import Config, load_config
from pipeline.outbox.notify import build_mail, flush_outbox
from pipeline.ledger.store import OutboxItem, Store, from_iso, iso

log = logging.getLogger(__name__)

LOCK_NAME = "worker"
HEARTBEAT_SECONDS = 30.0
LOCK_STALE_AFTER = timedelta(minutes=5)
JOBS_TABLE = "apscheduler_jobs"
LOCKED_EXIT = 3

GRACE = {"poll": 120, "remind": 12 * 3600, "digest": 24 * 3600, "report-after": 3 * 24 * 3600}


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------------- contexts


_CONTEXTS: dict[str, tuple[int, Any]] = {}
_CONTEXT_LOCK = threading.Lock()


def context_for(cfg_path: str | Path) -> Any:
    """The worker's Context for a config file, built once per process and rebuilt when the file changes."""
    from pipeline.context import Context

    path = str(Path(cfg_path).resolve())
    mtime = Path(path).stat().st_mtime_ns
    with _CONTEXT_LOCK:
        cached = _CONTEXTS.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        ctx = Context(load_config(path))
        if cached is not None:
            cached[1].store.engine.dispose()
        _CONTEXTS[path] = (mtime, ctx)
        return ctx


# --------------------------------------------------------------------------- jobs


def job_poll(cfg_path: str) -> None:
    run_job("poll", cfg_path)


def job_remind(cfg_path: str) -> None:
    run_job("remind", cfg_path)


def job_digest(cfg_path: str) -> None:
    run_job("digest", cfg_path)


def job_report_after(cfg_path: str, obligation_id: str) -> None:
    run_job("report-after", cfg_path, obligation_id=obligation_id)


# The scheduler's own thread and the IDLE thread both run jobs: one at a time.
_ONE_JOB = threading.Lock()


def run_job(name: str, cfg_path: str | Path, now: datetime | None = None, *, obligation_id: str | None = None,
            clock: Callable[[], datetime] = _utcnow) -> str:
    """Run one job now, after any job in hand, and return what it did (also logged).

    ``now`` is the instant the job decides for (which day it is, how long polling has failed);
    mail is stamped and sent with ``clock``, the real one by default.
    """
    with _ONE_JOB:
        return _run_job(name, cfg_path, now, obligation_id, clock)


def _run_job(name: str, cfg_path: str | Path, now: datetime | None, obligation_id: str | None,
             clock: Callable[[], datetime]) -> str:
    ctx = context_for(cfg_path)
    now = now or clock()
    if name == "poll":
        text = _poll(ctx, now, clock)
    elif name == "remind":
        from pipeline.plan.reminders import run_reminders

        today = now.astimezone(ctx.cfg.tz).date()
        text = run_reminders(ctx, today=today, clock=clock).text()
    elif name == "digest":
        from pipeline.plan.staffreport import run_report

        today = now.astimezone(ctx.cfg.tz).date()
        year, week, _ = today.isocalendar()
        text = run_report(ctx, today=today, send=True, key=f"report:weekly:{year}-W{week:02d}", clock=clock).text()
    elif name == "report-after":
        from pipeline.plan.staffreport import run_report

        if obligation_id is None:
            raise ValueError("report-after needs an obligation_id")
        today = now.astimezone(ctx.cfg.tz).date()
        text = run_report(ctx, today=today, send=True, key=f"report:deadline:{obligation_id}", clock=clock).text()
    else:
        raise ValueError(f"unknown job {name!r}")
    log.info("%s: %s", name, text)
    return text


def _poll(ctx: Any, now: datetime, clock: Callable[[], datetime]) -> str:
    from pipeline.worker.mailpass import run_pass

    store: Store = ctx.store
    error: str | None
    try:
        summary = run_pass(ctx, clock=clock)
        error = summary.error
        text = (f"fetched {summary.fetched}, new {summary.new}, duplicates {summary.duplicates}, "
                f"recovered {summary.recovered}, states {summary.states}, outbox {summary.outbox}")
    except Exception as exc:  # a poll that cannot run at all (config, database) is a failed poll too
        log.exception("poll failed")
        error = f"{exc.__class__.__name__}: {exc}"
        text = "failed"
    notes = check_liveness(ctx, now, error, clock)
    if error:
        text += f"; LỖI: {error}"
    if notes:
        text += "; " + "; ".join(notes)
        flush_outbox(store, ctx.cfg.smtp, clock())
    return text


# --------------------------------------------------------------------------- liveness


def _alert(ctx: Any, key: str, subject: str, body: str, now: datetime) -> bool:
    cfg: Config = ctx.cfg
    if not cfg.staff:
        log.warning("alert %s not mailed: no staff configured: %s", key, subject)
        return False
    subject = f"[{cfg.organisation}] {subject}"
    mid, raw = build_mail(sender=cfg.smtp.sender, to=cfg.staff, subject=subject, text=body)
    return ctx.store.enqueue(OutboxItem(key=key, purpose="alert", recipients=tuple(cfg.staff), subject=subject,
                                        smtp_message_id=mid, raw=raw), now)


def _local(dt: datetime, cfg: Config) -> str:
    return dt.astimezone(cfg.tz).strftime("%H:%M ngày %d/%m/%Y")


def check_liveness(ctx: Any, now: datetime, error: str | None, clock: Callable[[], datetime] = _utcnow) -> list[str]:
    """Record the poll's outcome; enqueue at most one alert per episode. Returns what was enqueued."""
    cfg: Config = ctx.cfg
    store: Store = ctx.store
    stamp = clock()
    notes: list[str] = []
    failing_since = store.get_kv("poll.failing_since") or ""
    if error is None:
        store.set_kv("poll.last_ok", iso(now), stamp)
        if not store.get_kv("poll.first_ok"):
            store.set_kv("poll.first_ok", iso(now), stamp)
        if failing_since:
            if store.get_kv("alert.poll_down") == failing_since:
                body = (f"Hệ thống tiếp nhận thư của {cfg.organisation} đã đọc được hộp thư "
                        f"{cfg.mailbox.username or cfg.mailbox.host} trở lại lúc {_local(now, cfg)} "
                        f"(gián đoạn từ {_local(from_iso(failing_since), cfg)}).\n\n"
                        "Thư đến trong thời gian gián đoạn được xử lý ở lượt này; không cần làm gì thêm.\n\n"
                        "(Thư cảnh báo tự động)\n")
                if _alert(ctx, f"alert:poll-up:{failing_since}", "Hộp thư đã hoạt động trở lại", body, stamp):
                    notes.append("recovery alert queued")
            store.set_kv("poll.failing_since", "", stamp)
            store.set_kv("alert.poll_down", "", stamp)
        notes += _check_quiet(ctx, now, stamp)
        return notes

    store.set_kv("poll.last_error", error, stamp)
    if not failing_since:
        store.set_kv("poll.failing_since", iso(now), stamp)
        return notes
    since = from_iso(failing_since)
    if now - since >= timedelta(minutes=cfg.alert_after_minutes) and store.get_kv("alert.poll_down") != failing_since:
        last_ok = store.get_kv("poll.last_ok")
        body = (
            f"Hệ thống tiếp nhận thư của {cfg.organisation} không đọc được hộp thư "
            f"{cfg.mailbox.username or ''} ({cfg.mailbox.host}:{cfg.mailbox.port}) từ {_local(since, cfg)} "
            f"đến nay ({int((now - since).total_seconds() // 60)} phút).\n\n"
            f"Lỗi gần nhất: {error}\n"
            f"Lần đọc thành công gần nhất: {_local(from_iso(last_ok), cfg) if last_ok else 'chưa có'}\n\n"
            "Đề nghị kiểm tra:\n"
            + (_OAUTH_HINT if cfg.mailbox.auth == "xoauth2" else _PASSWORD_HINT) +
            "  2. IMAP vẫn được bật trong Gmail (Cài đặt → Chuyển tiếp và POP/IMAP).\n"
            "  3. Máy chạy dịch vụ có kết nối Internet, đồng hồ máy đúng giờ.\n"
            "  4. Nhật ký (log) của dịch vụ `intake run`; thử chạy `intake poll` để xem lỗi cụ thể.\n\n"
            "Thư của các đơn vị vẫn nằm trong hộp thư và sẽ được xử lý khi kết nối trở lại. "
            "Hệ thống sẽ gửi thêm một thư khi hoạt động trở lại.\n\n(Thư cảnh báo tự động)\n"
        )
        if _alert(ctx, f"alert:poll-down:{failing_since}", "CẢNH BÁO: không đọc được hộp thư", body, stamp):
            notes.append("failure alert queued")
        store.set_kv("alert.poll_down", failing_since, stamp)
    return notes


_PASSWORD_HINT = ("  1. Mật khẩu ứng dụng (App password) của tài khoản Gmail còn hiệu lực; nếu đã đổi mật khẩu "
                  "tài khoản thì phải tạo mật khẩu ứng dụng mới và cập nhật biến môi trường của dịch vụ.\n")
_OAUTH_HINT = ("  1. Quyền truy cập OAuth 2 còn hiệu lực: refresh token có thể đã bị thu hồi (đổi mật khẩu tài khoản, "
               "gỡ quyền ứng dụng, ứng dụng còn ở chế độ Testing quá 7 ngày); lấy lại bằng "
               "`python -m pipeline.oauth` và cập nhật biến môi trường / tệp token của dịch vụ.\n")


def _check_quiet(ctx: Any, now: datetime, stamp: datetime) -> list[str]:
    """No mail for quiet_alert_days while a deadline is near: the mailbox may be filtering, or mail forwarded elsewhere."""
    cfg: Config = ctx.cfg
    store: Store = ctx.store
    notes: list[str] = []
    last_mail = store.last_received_at()
    alerted = store.get_kv("alert.quiet") or ""
    if alerted:
        obligation_id, _, at = alerted.partition("|")
        if last_mail is not None and at and last_mail > from_iso(at):
            body = (f"Hộp thư {cfg.mailbox.username or cfg.mailbox.host} đã nhận thư mới lúc {_local(last_mail, cfg)}; "
                    "việc tiếp nhận diễn ra bình thường.\n\n(Thư cảnh báo tự động)\n")
            if _alert(ctx, f"alert:quiet-over:{obligation_id}", "Hộp thư đã có thư mới trở lại", body, stamp):
                notes.append("quiet-over alert queued")
            store.set_kv("alert.quiet", "", stamp)
        return notes
    if cfg.quiet_alert_days <= 0:
        return notes
    first_ok = store.get_kv("poll.first_ok")
    quiet_since = last_mail or (from_iso(first_ok) if first_ok else None)
    if quiet_since is None or now - quiet_since < timedelta(days=cfg.quiet_alert_days):
        return notes
    today = now.astimezone(cfg.tz).date()
    for ob in ctx.obligations:
        due = ob.due_date
        if due is None or not 0 <= (due - today).days <= cfg.quiet_days_before_deadline:
            continue
        key = f"alert:quiet:{ob.id}"
        body = (
            f"Hộp thư {cfg.mailbox.username or cfg.mailbox.host} vẫn đọc được bình thường nhưng không có thư mới "
            f"nào từ {_local(quiet_since, cfg)} (đã {(now - quiet_since).days} ngày), trong khi hạn nộp "
            f"“{ob.title}” là ngày {due:%d/%m/%Y}.\n\n"
            "Đề nghị kiểm tra:\n"
            f"  1. Thư mục đang đọc ({cfg.mailbox.folder}) có đúng không; Gmail có bộ lọc chuyển thư sang nhãn khác, "
            "vào Spam hoặc tự động lưu trữ (bỏ qua Hộp thư đến) không.\n"
            "  2. Hộp thư có bị đầy dung lượng, hoặc thư có bị chuyển tiếp sang địa chỉ khác không.\n"
            "  3. Các đơn vị có đang gửi vào đúng địa chỉ không (hỏi thử một đơn vị).\n\n"
            "(Thư cảnh báo tự động)\n"
        )
        if _alert(ctx, key, f"Không có thư mới {(now - quiet_since).days} ngày trước hạn {due:%d/%m/%Y}", body, stamp):
            notes.append(f"quiet alert queued ({ob.id})")
        store.set_kv("alert.quiet", f"{ob.id}|{iso(now)}", stamp)
        break
    return notes


# --------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class JobSpec:
    id: str
    func: str  # textual reference, what the job store keeps
    trigger: Any
    args: tuple[Any, ...]
    misfire_grace_time: int
    run_now: bool = False


def desired_jobs(cfg: Config, cfg_path: str | Path, obligations: Any, now: datetime,
                 poll_seconds: int | None = None) -> list[JobSpec]:
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    path = str(Path(cfg_path).resolve())
    tz = cfg.tz
    interval = IntervalTrigger(seconds=poll_seconds, timezone=tz) if poll_seconds else \
        IntervalTrigger(minutes=cfg.poll_minutes, timezone=tz)
    grace_poll = poll_seconds if poll_seconds else max(GRACE["poll"], cfg.poll_minutes * 60)
    jobs = [
        JobSpec("poll", "pipeline.worker.scheduler:job_poll", interval, (path,), grace_poll, run_now=True),
        JobSpec("remind", "pipeline.worker.scheduler:job_remind",
                CronTrigger(hour=cfg.reminder_hour, minute=0, timezone=tz), (path,), GRACE["remind"]),
        JobSpec("digest", "pipeline.worker.scheduler:job_digest",
                CronTrigger(day_of_week=cfg.digest_weekday, hour=cfg.reminder_hour, minute=30, timezone=tz),
                (path,), GRACE["digest"]),
    ]
    for ob in obligations:
        if ob.due_date is None:
            continue
        when = datetime.combine(ob.due_date + timedelta(days=1), time(cfg.reminder_hour, 30), tzinfo=tz)
        if when + timedelta(seconds=GRACE["report-after"]) < now:
            continue  # long past: nothing to catch up
        jobs.append(JobSpec(f"report-after:{ob.id}", "pipeline.worker.scheduler:job_report_after",
                            DateTrigger(run_date=when, timezone=tz), (path, ob.id), GRACE["report-after"]))
    return jobs


def _engine_options(url: str) -> dict[str, Any]:
    return {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}


def persisted_jobs(url: str) -> dict[str, tuple[float | None, str]]:
    """id → (next_run_time as a UTC timestamp, repr of its trigger) of the jobs already stored."""
    engine = sa.create_engine(url, **_engine_options(url))
    try:
        if not sa.inspect(engine).has_table(JOBS_TABLE):
            return {}
        table = sa.Table(JOBS_TABLE, sa.MetaData(), autoload_with=engine)
        out: dict[str, tuple[float | None, str]] = {}
        with engine.connect() as c:
            for row in c.execute(sa.select(table.c.id, table.c.next_run_time, table.c.job_state)):
                try:
                    state = pickle.loads(row.job_state)
                    trig = repr(state.get("trigger"))
                except Exception:  # an unreadable old job is simply replaced
                    trig = ""
                out[row.id] = (row.next_run_time, trig)
        return out
    finally:
        engine.dispose()


def _drop_stale_jobs(url: str, keep: set[str]) -> list[str]:
    engine = sa.create_engine(url, **_engine_options(url))
    try:
        if not sa.inspect(engine).has_table(JOBS_TABLE):
            return []
        table = sa.Table(JOBS_TABLE, sa.MetaData(), autoload_with=engine)
        with engine.begin() as c:
            stale = [r for r in c.execute(sa.select(table.c.id)).scalars() if r not in keep]
            if stale:
                c.execute(table.delete().where(table.c.id.in_(stale)))
        return stale
    finally:
        engine.dispose()


class _StopSafe:
    """APScheduler 3's main loop runs one more round of job processing after shutdown() (it checks the
    state only at the top of the loop) and would try to submit a due job to the stopped executor;
    a stopped scheduler must start nothing."""

    def _process_jobs(self) -> float | None:
        from apscheduler.schedulers.base import STATE_STOPPED

        if self.state == STATE_STOPPED:  # type: ignore[attr-defined]
            return None
        return super()._process_jobs()  # type: ignore[misc, no-any-return]


def _blocking_cls() -> Any:
    from apscheduler.schedulers.blocking import BlockingScheduler

    class WorkerScheduler(_StopSafe, BlockingScheduler):
        pass

    return WorkerScheduler


def background_cls() -> Any:
    """The same schedule in a background thread (tests, embedding)."""
    from apscheduler.schedulers.background import BackgroundScheduler

    class BackgroundWorkerScheduler(_StopSafe, BackgroundScheduler):
        pass

    return BackgroundWorkerScheduler


def build_scheduler(cfg: Config, cfg_path: str | Path, *, obligations: Any = None, now: datetime | None = None,
                    poll_seconds: int | None = None, scheduler_cls: Any = None) -> Any:
    """A scheduler with the jobs added (not started). A stored job whose trigger did not change keeps
    its next run time, so a run missed while the worker was down fires once (coalesced) on start."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    now = now or _utcnow()
    if obligations is None:
        from pipeline.context import obligations_of

        obligations = obligations_of(cfg)
    specs = desired_jobs(cfg, cfg_path, obligations, now, poll_seconds)
    Store(cfg.database_url).engine.dispose()  # the database (and its folder) exist, in WAL mode for SQLite
    stale = _drop_stale_jobs(cfg.database_url, {s.id for s in specs})
    if stale:
        log.info("removed jobs no longer in the schedule: %s", ", ".join(stale))
    stored = persisted_jobs(cfg.database_url)
    cls = scheduler_cls or _blocking_cls()
    sched = cls(
        timezone=cfg.tz,
        jobstores={"default": SQLAlchemyJobStore(url=cfg.database_url, tablename=JOBS_TABLE,
                                                 engine_options=_engine_options(cfg.database_url))},
        # One job at a time: a poll and a reminder run never interleave their outbox flushes.
        executors={"default": ThreadPoolExecutor(1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": GRACE["poll"]},
    )
    for spec in specs:
        kwargs: dict[str, Any] = {}
        old = stored.get(spec.id)
        if spec.run_now:
            kwargs["next_run_time"] = now.astimezone(cfg.tz)
        elif old is not None and old[0] is not None and old[1] == repr(spec.trigger):
            kwargs["next_run_time"] = datetime.fromtimestamp(old[0], timezone.utc).astimezone(cfg.tz)
        sched.add_job(spec.func, trigger=spec.trigger, args=list(spec.args), id=spec.id, name=spec.id,
                      replace_existing=True, coalesce=True, max_instances=1,
                      misfire_grace_time=spec.misfire_grace_time, **kwargs)
    return sched


# --------------------------------------------------------------------------- the worker process


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def lock_takeable(row: Any, now: datetime, host: str) -> bool:
    if from_iso(row.heartbeat_at) < now - LOCK_STALE_AFTER:
        return True
    return row.host == host and row.pid != os.getpid() and not _pid_alive(row.pid)


def acquire_worker_lock(store: Store, now: datetime | None = None) -> tuple[str | None, Any]:
    """(holder id, None) when the lock is ours; (None, row of the live holder) otherwise."""
    host = socket.gethostname()
    holder = f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    now = now or _utcnow()
    won, row = store.acquire_lock(LOCK_NAME, holder, host, os.getpid(), now,
                                  lambda r: lock_takeable(r, now, host))
    return (holder, None) if won else (None, row)


def locked_message(row: Any, cfg: Config) -> str:
    if row is None:
        return "Không giành được khoá worker (một tiến trình khác vừa giành trước) / could not take the worker lock."
    return (
        f"Một tiến trình `intake run` khác đang chạy với cùng cơ sở dữ liệu: máy {row.host}, pid {row.pid}, "
        f"chạy từ {_local(from_iso(row.acquired_at), cfg)}, tín hiệu gần nhất {_local(from_iso(row.heartbeat_at), cfg)}.\n"
        "Mỗi cơ sở dữ liệu chỉ được một worker chạy. Hãy dừng tiến trình kia trước "
        f"(nếu nó đã chết trên máy khác, khoá tự hết hạn sau {int(LOCK_STALE_AFTER.total_seconds() // 60)} phút).\n"
        f"another intake run (host {row.host}, pid {row.pid}) holds the worker lock for this database; exiting."
    )


def start_desk(cfg_path: str | Path) -> Any:
    """The web desk in a background thread of the worker (desk.enabled); None when it cannot start
    (e.g. its port is taken): the worker's own jobs matter more, so it runs on without it."""
    try:
        from pipeline.desk import DeskServer, create_app
        from pipeline.context import Context

        cfg = load_config(cfg_path)
        server = DeskServer(create_app(Context(cfg)), cfg.desk.host, cfg.desk.port).start()
    except Exception as exc:
        log.error("desk not started: %s", exc)
        return None
    log.info("desk serving on %s", server.url)
    return server


def start_idle(cfg: Config, cfg_path: str | Path, poll_seconds: int | None) -> Any:
    """The IDLE watcher running the poll job when mail arrives; None when ``worker.idle`` is off."""
    from pipeline.worker.idle import IdleWatcher

    polling = f"every {poll_seconds} s" if poll_seconds else f"every {cfg.poll_minutes} min"
    if not cfg.idle:
        log.info("IDLE off (worker.idle: false); polling %s", polling)
        return None
    path = str(Path(cfg_path).resolve())
    # load_config, not context_for: rebuilding the shared Context here could close its database under a job
    return IdleWatcher(lambda: load_config(path).mailbox, lambda: run_job("poll", path),
                       renew_seconds=cfg.idle_renew_minutes * 60, polling=polling).start()


def run_worker(cfg_path: Path, *, poll_seconds: int | None = None) -> int:
    """`intake run`: take the lock, run the schedule (and IDLE) until SIGTERM/SIGINT, release the lock."""
    cfg = load_config(cfg_path)
    store = Store(cfg.database_url)
    holder, row = acquire_worker_lock(store)
    if holder is None:
        print(locked_message(row, cfg), file=sys.stderr)
        store.engine.dispose()
        return LOCKED_EXIT
    log.info("worker lock taken (%s); database %s", holder, store.engine.url.render_as_string(hide_password=True))
    stop = threading.Event()
    stoppers: list[threading.Thread] = []
    exit_code = 0
    sched = None
    desk = None
    idle = None
    try:
        sched = build_scheduler(cfg, cfg_path, poll_seconds=poll_seconds)

        def request_stop(reason: str) -> None:
            if stop.is_set():
                return
            stop.set()
            log.info("stopping (%s): the job in hand finishes first", reason)
            if idle is not None:
                idle.stop()

            def _shutdown() -> None:
                try:
                    sched.shutdown(wait=True)
                except Exception as exc:  # not running yet / already stopped
                    log.debug("shutdown: %s", exc)

            t = threading.Thread(target=_shutdown, name="shutdown", daemon=False)
            stoppers.append(t)
            t.start()

        def on_signal(signum: int, _frame: Any) -> None:
            request_stop(signal.Signals(signum).name)

        def heartbeat() -> None:
            nonlocal exit_code
            while not stop.wait(HEARTBEAT_SECONDS):
                try:
                    if not store.heartbeat_lock(LOCK_NAME, holder, _utcnow()):
                        log.error("the worker lock was taken over by another process: stopping")
                        exit_code = LOCKED_EXIT
                        request_stop("lock lost")
                except Exception as exc:  # the database away for a moment: try again next beat
                    log.warning("heartbeat failed: %s", exc)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        beat = threading.Thread(target=heartbeat, name="heartbeat", daemon=True)
        beat.start()
        if cfg.desk.enabled:
            desk = start_desk(cfg_path)
        for job in sched.get_jobs():
            log.info("job %s: %s", job.id, job.trigger)
        log.info("worker started (time zone %s)", cfg.timezone)
        if not stop.is_set():
            idle = start_idle(cfg, cfg_path, poll_seconds)
            sched.start()
        for t in stoppers:
            t.join()
        stop.set()
        beat.join(timeout=5)
    finally:
        if idle is not None:  # a pass it started finishes before the lock goes
            idle.stop()
            idle.join()
        if desk is not None:
            try:
                desk.stop()
            except Exception:  # never keep the lock because the desk would not stop
                log.exception("desk did not stop cleanly")
        try:
            store.release_lock(LOCK_NAME, holder)
        finally:
            store.engine.dispose()
    log.info("worker stopped cleanly; lock released")
    return exit_code


__all__ = [
    "run_worker", "run_job", "build_scheduler", "desired_jobs", "persisted_jobs", "check_liveness",
    "acquire_worker_lock", "locked_message", "job_poll", "job_remind", "job_digest", "job_report_after", "start_desk",
    "start_idle",
]
