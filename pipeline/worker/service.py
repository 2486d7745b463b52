"""`intake run`: the worker process. Serves one or more districts (one config file each), each while it holds
that district's lease; stands by for the others; stops cleanly.

One worker per district at a time (lock.py): a thread per district takes the lease, or stands by and tries
again every few seconds; once held it is renewed every RENEW_SECONDS. While a district's lease is held its
schedule (schedule.py), its IDLE watcher (idle.py) and its desk (``desk.enabled``) run; a lease lost (not
renewed in time: the process was paused, the database away) stops them at once and the district goes back
to standing by. With ``--no-wait`` a district held by another worker is left to it, and a worker holding no
district exits with LOCKED_EXIT.

Receipts in seconds: where the server offers IMAP IDLE (``worker.idle``, on by default), a thread of the
worker waits for new mail and runs the poll job at once. Jobs started by IDLE and by the schedule run one at
a time (jobs.run_job), and only while the lease is held (runtime.lease_held). The scheduled poll stays, as the
fallback where IDLE is missing or failing.

SIGTERM / SIGINT: no new job starts, the job in hand finishes (``shutdown(wait=True)``), the leases are
released, exit status 0.
"""
from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from pipeline.config import Config, load_config
from pipeline.context import bind_mailbox
from pipeline.runtime import lease_held
from pipeline.ledger.migrate import where
from pipeline.ledger.store import Store
from pipeline.worker.jobs import run_job
from pipeline.worker.lock import (LOCKED_EXIT, RENEW_SECONDS, STANDBY_SECONDS, Lease, locked_message, standby_message)
from pipeline.worker.schedule import background_cls, build_scheduler

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

    def poll() -> None:
        if lease_held(path):  # IDLE may wake just as the lease is lost
            run_job("poll", path)

    # load_config, not context_for: rebuilding the shared Context here could close its database under a job
    return IdleWatcher(lambda: load_config(path).mailbox, poll,
                       renew_seconds=cfg.idle_renew_minutes * 60, polling=polling).start()


def _leased_scheduler(path: Path) -> Any:
    """The background scheduler, starting no job while the district's lease is not held (between a lost
    lease and the scheduler's shutdown, e.g. just after the process was paused)."""
    base = background_cls()

    class LeasedScheduler(base):  # type: ignore[misc, valid-type]
        def _process_jobs(self) -> float | None:
            if not lease_held(path):
                return 1.0
            return super()._process_jobs()  # type: ignore[no-any-return]

    return LeasedScheduler


_NOBODY = object()  # no standby message logged yet


class District:
    """One district served by this process: its lease and, while held, its schedule, IDLE and desk."""

    def __init__(self, cfg_path: Path, poll_seconds: int | None) -> None:
        self.path = Path(cfg_path).resolve()
        self.cfg = load_config(self.path)
        self.poll_seconds = poll_seconds
        # the lease thread is this store's only user: one connection is enough
        self.store = Store(self.cfg.database_url, dataclasses.replace(self.cfg.storage, pool_size=1, max_overflow=0))
        bind_mailbox(self.store, self.cfg)  # a ledger serving another mailbox: refused at start, in words
        self.lease = Lease(self.path, self.store)
        self.label = f"{self.cfg.organisation} ({self.path})"
        self.sched: Any = None
        self.idle: Any = None
        self.desk: Any = None
        self.gone = False  # --no-wait: left to another worker
        self._told: object = _NOBODY  # the holder last logged as standing by for

    @property
    def active(self) -> bool:
        return self.sched is not None

    def step(self, stop: threading.Event) -> float:
        """One round of the district's lease thread; the seconds until the next."""
        if self.active:
            try:
                if self.lease.renew():
                    return RENEW_SECONDS
                log.error("%s: lost the worker lease (not renewed in time): stopping its work, standing by",
                          self.label)
            except Exception as exc:  # the database away for a moment: the lease still counts until its deadline
                if self.lease.held:
                    log.warning("%s: lease not renewed (%s); trying again", self.label, exc)
                    return min(RENEW_SECONDS, STANDBY_SECONDS)
                log.error("%s: lease not renewed in time (%s): stopping its work, standing by", self.label, exc)
                self.lease.drop()
            self.deactivate(wait=False)
        try:
            won = self.lease.acquire()
        except Exception as exc:
            log.warning("%s: could not reach the database for the lease: %s", self.label, exc)
            return STANDBY_SECONDS
        if won and not stop.is_set():
            self.activate()
            return RENEW_SECONDS
        if won:
            return 0.0
        self.tell_standby()
        return STANDBY_SECONDS

    def tell_standby(self) -> None:
        row = self.lease.holder_row()
        holder = row.holder if row is not None else None
        if holder != self._told:
            log.info("%s", standby_message(row, self.label, self.cfg))
        self._told = holder

    def activate(self) -> None:
        self._told = _NOBODY
        log.info("%s: worker lease taken (%s); database %s", self.label, self.lease.holder,
                 where(self.cfg.database_url))
        self.sched = build_scheduler(self.cfg, self.path, poll_seconds=self.poll_seconds,
                                     scheduler_cls=_leased_scheduler(self.path))
        for job in self.sched.get_jobs():
            log.info("job %s: %s", job.id, job.trigger)
        self.sched.start()
        self.idle = start_idle(self.cfg, self.path, self.poll_seconds)
        if self.cfg.desk.enabled:
            self.desk = start_desk(self.path)
        log.info("worker started (time zone %s)", self.cfg.timezone)

    def deactivate(self, *, wait: bool) -> None:
        """Stop the district's work: IDLE, the schedule (``wait``: the job in hand finishes first), the desk."""
        idle, sched, desk = self.idle, self.sched, self.desk
        self.idle = self.sched = self.desk = None
        if idle is not None:
            idle.stop()
            if wait:  # a pass it started finishes before the lease goes
                idle.join()
        if sched is not None:
            try:
                sched.shutdown(wait=wait)
            except Exception as exc:  # already stopped
                log.debug("shutdown: %s", exc)
        if desk is not None:
            try:
                desk.stop()
            except Exception:  # never keep the lease because the desk would not stop
                log.exception("desk did not stop cleanly")

    def close(self) -> None:
        self.deactivate(wait=True)
        try:
            self.lease.release()
        finally:
            self.store.engine.dispose()


def run_worker(cfg_paths: list[Path], *, poll_seconds: int | None = None, wait: bool = True) -> int:
    """`intake run`: serve each district while holding its lease, stand by for the others, until
    SIGTERM/SIGINT; then let the jobs in hand finish and give the leases back."""
    if len({Path(p).resolve() for p in cfg_paths}) != len(cfg_paths):
        print("LỖI: một tệp cấu hình được nêu hai lần / a config file is given twice", file=sys.stderr)
        return 2
    districts: list[District] = []
    try:
        for p in cfg_paths:
            districts.append(District(p, poll_seconds))
    except BaseException:
        for d in districts:
            d.lease.release()
            d.store.engine.dispose()
        raise
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if not stop.is_set():
            log.info("stopping (%s): the job in hand finishes first", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    exit_code = 0
    if not wait:
        for d in districts:
            if not d.lease.acquire():
                print(locked_message(d.lease.holder_row(), d.cfg), file=sys.stderr)
                d.gone = True
        if all(d.gone for d in districts):
            for d in districts:
                d.close()
            return LOCKED_EXIT

    def serve(d: District) -> None:
        delay = 0.0
        while not stop.wait(delay):
            if d.gone:
                return
            try:
                delay = d.step(stop)
            except Exception:  # e.g. the schedule could not be built: let a standby try, try again later
                log.exception("%s: the district's work could not start: lease given back", d.label)
                d.deactivate(wait=False)
                try:
                    d.lease.give_back()
                except Exception as exc:
                    log.warning("%s: lease not given back: %s", d.label, exc)
                delay = 60.0
            if not wait and not d.active:  # --no-wait: a lease lost is left to the other worker
                d.gone = True
                return

    threads = [threading.Thread(target=serve, args=(d,), name=f"lease:{d.path.name}", daemon=True)
               for d in districts if not d.gone]
    for t in threads:
        t.start()
    try:
        while not stop.wait(0.5):
            if not wait and all(d.gone for d in districts):
                log.error("no district left to serve (--no-wait): exiting")
                exit_code = LOCKED_EXIT
                break
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        for d in districts:
            try:
                d.close()
            except Exception:
                log.exception("%s: not stopped cleanly", d.label)
    log.info("worker stopped cleanly; lock released")
    return exit_code
