"""The schedule of `intake run`: which jobs run when, kept in the database across restarts.

APScheduler 3.x in the configured time zone, with its jobs persisted in the same database
(``SQLAlchemyJobStore``, table ``apscheduler_jobs``; on PostgreSQL in the district's schema, as the URL's
search_path says, so districts sharing a database keep their own jobs under the same ids): a run missed while the worker was down fires
once on restart (coalesced) when it is within the job's grace time, never once per missed occurrence.

Jobs (jobs.py): ``poll`` every ``worker.poll_minutes`` (and once at start); ``remind`` daily at
``worker.reminder_hour``; ``digest`` weekly on ``worker.digest_weekday`` (the report mailed to
staff); ``report-after:<obligation>`` on the day after each obligation's due date. The store keeps
each job's id and a "module:function" reference to its callable; at every start each stored job is
either replaced by the job of the same id (keeping its next run time when its trigger is unchanged)
or dropped, so a reference stored by an older version is never called.
"""
from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import sqlalchemy as sa

from pipeline.config import Config
from pipeline.ledger.backend import engine_options
from pipeline.ledger.store import Store
from pipeline.worker import jobs

log = logging.getLogger(__name__)

JOBS_TABLE = "apscheduler_jobs"
GRACE = {"poll": 120, "outbox": 60, "remind": 12 * 3600, "digest": 24 * 3600, "report-after": 3 * 24 * 3600}


def _ref(func: Callable[..., Any]) -> str:
    """The textual reference the job store keeps, "module:function"."""
    return f"{func.__module__}:{func.__qualname__}"


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
    specs = [
        JobSpec("poll", _ref(jobs.job_poll), interval, (path,), grace_poll, run_now=True),
        JobSpec("outbox", _ref(jobs.job_outbox), IntervalTrigger(minutes=1, timezone=tz), (path,), GRACE["outbox"]),
        JobSpec("remind", _ref(jobs.job_remind),
                CronTrigger(hour=cfg.reminder_hour, minute=0, timezone=tz), (path,), GRACE["remind"]),
        JobSpec("digest", _ref(jobs.job_digest),
                CronTrigger(day_of_week=cfg.digest_weekday, hour=cfg.reminder_hour, minute=30, timezone=tz),
                (path,), GRACE["digest"]),
    ]
    for ob in obligations:
        if ob.due_date is None:
            continue
        when = datetime.combine(ob.due_date + timedelta(days=1), time(cfg.reminder_hour, 30), tzinfo=tz)
        if when + timedelta(seconds=GRACE["report-after"]) < now:
            continue  # long past: nothing to catch up
        specs.append(JobSpec(f"report-after:{ob.id}", _ref(jobs.job_report_after),
                             DateTrigger(run_date=when, timezone=tz), (path, ob.id), GRACE["report-after"]))
    return specs


def persisted_jobs(url: str) -> dict[str, tuple[float | None, str]]:
    """id → (next_run_time as a UTC timestamp, repr of its trigger) of the jobs already stored."""
    engine = sa.create_engine(url, **engine_options(url))
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
    engine = sa.create_engine(url, **engine_options(url))
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

    now = now or datetime.now(timezone.utc)
    if obligations is None:
        from pipeline.context import campaigns_of

        obligations = campaigns_of(cfg)[cfg.year].obligations
    specs = desired_jobs(cfg, cfg_path, obligations, now, poll_seconds)
    # the database (and its folder, or its district's schema) exist, in WAL mode for SQLite
    Store(cfg.database_url, cfg.storage).engine.dispose()
    stale = _drop_stale_jobs(cfg.database_url, {s.id for s in specs})
    if stale:
        log.info("removed jobs no longer in the schedule: %s", ", ".join(stale))
    stored = persisted_jobs(cfg.database_url)
    cls = scheduler_cls or _blocking_cls()
    sched = cls(
        timezone=cfg.tz,
        jobstores={"default": SQLAlchemyJobStore(url=cfg.database_url, tablename=JOBS_TABLE,
                                                 engine_options=engine_options(cfg.database_url, cfg.storage))},
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
