"""`intake run`: the worker process. Takes the lock, runs the schedule and the IDLE watcher, stops cleanly.

One worker per database (lock.py): the lock is taken first and beaten every HEARTBEAT_SECONDS by a
thread of its own; a worker that finds its lock taken over stops with status LOCKED_EXIT.

Receipts in seconds: where the server offers IMAP IDLE (``worker.idle``, on by default), a thread
of the worker waits for new mail and runs the poll job at once (idle.py). Jobs started by IDLE and
by the schedule (schedule.py) run one at a time (jobs.run_job). The scheduled poll stays, as the
fallback where IDLE is missing or failing. The web desk runs in a thread too when ``desk.enabled``.

SIGTERM / SIGINT: no new job starts, the job in hand finishes (``shutdown(wait=True)``), the lock
is released, exit status 0.
"""
from __future__ import annotations

import logging
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.config import Config, load_config
from pipeline.ledger.store import Store
from pipeline.worker.jobs import run_job
from pipeline.worker.lock import HEARTBEAT_SECONDS, LOCK_NAME, LOCKED_EXIT, acquire_worker_lock, locked_message
from pipeline.worker.schedule import build_scheduler

log = logging.getLogger(__name__)


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
    start_over = threading.Event()  # the main thread has started the schedule and it ended, or never will
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
                # A signal between the main thread's last look at ``stop`` and the scheduler's start would
                # otherwise be lost (shutdown() refuses a scheduler that is not running yet).
                while not sched.running and not start_over.wait(0.05):
                    pass
                try:
                    sched.shutdown(wait=True)
                except Exception as exc:  # never started, or already stopped
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
                    if not store.heartbeat_lock(LOCK_NAME, holder, datetime.now(timezone.utc)):
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
        try:
            if not stop.is_set():
                idle = start_idle(cfg, cfg_path, poll_seconds)
                sched.start()
        finally:
            start_over.set()
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
