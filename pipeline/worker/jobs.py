"""The worker's jobs, run one at a time, whoever starts them.

``poll`` runs a pass (mailpass.py) and records whether the mailbox could be read (liveness.py);
``remind`` sends the day's reminders; ``digest`` mails the weekly report to staff;
``report-after`` mails the report for one obligation on the day after its due date; ``outbox`` sends,
every minute, mail that waited for the sending limit's window (a receipt held back by ``smtp.per_minute``
leaves within a minute, not at the next poll). Every job is
idempotent by itself (reminder stages and report occasions are unique keys), so a job run twice
sends nothing twice.

The job functions are module-level and take the config path, so the schedule's job store
(schedule.py) holds only a textual reference ("pipeline.worker.jobs:job_poll") and a string. The
scheduler's own thread and the IDLE thread (idle.py) both run jobs through :func:`run_job`, under one
lock per district: two passes never run at once, and a poll and a reminder never interleave their outbox
flushes; a worker that does not hold the district's lease (lock.py) runs none.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from pipeline.config import load_config
from pipeline.ledger.store import Store
from pipeline.plan.sending import send_due
from pipeline.runtime import job_lock, lease_held
from pipeline.worker.liveness import check_liveness

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


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


def job_poll(cfg_path: str) -> None:
    run_job("poll", cfg_path)


def job_remind(cfg_path: str) -> None:
    run_job("remind", cfg_path)


def job_digest(cfg_path: str) -> None:
    run_job("digest", cfg_path)


def job_outbox(cfg_path: str) -> None:
    run_job("outbox", cfg_path)


def job_report_after(cfg_path: str, obligation_id: str) -> None:
    run_job("report-after", cfg_path, obligation_id=obligation_id)


def run_job(name: str, cfg_path: str | Path, now: datetime | None = None, *, obligation_id: str | None = None,
            clock: Callable[[], datetime] = _utcnow) -> str:
    """Run one job now, after any job in hand, and return what it did (also logged).

    ``now`` is the instant the job decides for (which day it is, how long polling has failed);
    mail is stamped and sent with ``clock``, the real one by default.
    """
    with job_lock(cfg_path):
        # Checked after the wait for the lock, which may outlast the lease: a worker that lost it does nothing.
        if not lease_held(cfg_path):
            return "lease not held: another worker serves this district"
        if name == "outbox":  # every minute: quiet unless something was waiting
            return _flush_waiting(context_for(cfg_path), now or clock(), clock)
        return _run_job(name, cfg_path, now, obligation_id, clock)


def _flush_waiting(ctx: Any, now: datetime, clock: Callable[[], datetime]) -> str:
    if not ctx.store.due_outbox(now, limit=1):
        return "nothing waiting"
    got = send_due(ctx, clock())
    log.info("outbox: %s", got)
    return f"{got}"


def _run_job(name: str, cfg_path: str | Path, now: datetime | None, obligation_id: str | None,
             clock: Callable[[], datetime]) -> str:
    ctx = context_for(cfg_path)
    now = now or clock()
    if name == "poll":
        text = _poll(ctx, now, clock)
    elif name == "remind":
        from pipeline.plan.reminders import run_reminders

        today = now.astimezone(ctx.cfg.tz).date()
        # Last year's late documents are still reminded (up to the cut-off) after the office moved to a new year.
        text = " | ".join(f"{year}: {run_reminders(ctx.for_year(year), today=today, clock=clock).text()}"
                          for year in ctx.reminded_years())
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
        text = run_report(ctx, today=today, send=True, key=f"report:deadline:{ctx.year}:{obligation_id}", clock=clock).text()
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
        send_due(ctx, clock())
    return text
