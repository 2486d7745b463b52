"""Receipts in seconds: `intake run` waits on IMAP IDLE and runs the poll job as soon as mail arrives.

A thread of the worker keeps a second, read-only IMAP session (the same login code as the pass:
:class:`pipeline.mail.mailbox.Mailbox`) in IDLE on the configured folder. When the server announces mail
(``* n EXISTS``) the thread runs the poll job, the very job the schedule runs, which takes the one
job lock (jobs.py): a pass never runs twice at once. The session stays in IDLE during the pass,
so mail that arrives meanwhile is announced too and gets a pass of its own right after.

IDLE is ended and entered again every ``worker.idle_renew_minutes`` (servers end it after about 29
minutes: RFC 2177, Gmail). A dropped connection is opened again after 1, 2, 4 … seconds, at most
MAX_RETRY apart, and every (re)connection starts with a pass: what arrived while nobody watched is
above the pass's UID high-water mark, so nothing is missed. Where the server does not offer IDLE,
or while it keeps failing, the scheduled poll every ``worker.poll_minutes`` (always on) does the work.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from pipeline.config import MailboxConfig
from pipeline.mail.mailbox import Mailbox

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0   # how long one wait lasts: the thread notices a stop request this fast
FIRST_RETRY = 1.0
MAX_RETRY = 300.0
STABLE_AFTER = 60.0   # a connection that lived this long starts the back-off afresh when it drops


class IdleWatcher:
    """Wait on IDLE in a thread; ``run_pass()`` when mail arrives. ``start()``, then ``stop()`` and ``join()``."""

    def __init__(self, mailbox_config: Callable[[], MailboxConfig], run_pass: Callable[[], object], *,
                 renew_seconds: float, polling: str) -> None:
        self._mailbox_config = mailbox_config  # read at each connection: a changed password is used at once
        self._run_pass = run_pass
        self._renew_seconds = renew_seconds
        self._polling = polling  # "every 5 min", for the log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="idle", daemon=True)

    def start(self) -> IdleWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        delay = FIRST_RETRY
        while not self._stop.is_set():
            connected = time.monotonic()
            try:
                if not self._watch():
                    log.info("IDLE: the server does not offer IDLE; polling %s", self._polling)
                return
            except Exception as exc:  # the watcher must outlive any failure; the schedule polls meanwhile
                if time.monotonic() - connected >= STABLE_AFTER:
                    delay = FIRST_RETRY
                log.warning("IDLE: %s; reconnecting in %g s (polling %s meanwhile)", exc, delay, self._polling)
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, MAX_RETRY)

    def _watch(self) -> bool:
        """One connection: IDLE until stopped (True), or False at once when the server has no IDLE."""
        cfg = self._mailbox_config()
        with Mailbox(cfg) as mailbox:
            if not mailbox.can_idle():
                return False
            mailbox.examine(cfg.folder)
            mailbox.idle_start()
            log.info("IDLE: waiting for mail in %s (renewed every %g min)", cfg.folder, self._renew_seconds / 60)
            if not self._stop.is_set():  # a SIGTERM while connecting: no new pass
                self._pass("connected")  # before the IDLE started nobody watched
            renew_at = time.monotonic() + self._renew_seconds
            while not self._stop.is_set():
                arrived = mailbox.idle_wait(max(0.0, min(CHECK_SECONDS, renew_at - time.monotonic())))
                if time.monotonic() >= renew_at and not self._stop.is_set():
                    arrived = mailbox.idle_stop() or arrived
                    mailbox.idle_start()
                    renew_at = time.monotonic() + self._renew_seconds
                    log.info("IDLE: renewed")
                if arrived and not self._stop.is_set():
                    self._pass("new mail")
        return True

    def _pass(self, why: str) -> None:
        log.info("IDLE: %s → pass", why)
        try:
            self._run_pass()
        except Exception:  # e.g. the config file became invalid: say so, keep watching
            log.exception("IDLE: the pass failed")
