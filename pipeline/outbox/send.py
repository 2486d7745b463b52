"""Sending the outbox: one item at a time, the most awaited first, within Gmail's limits, each item claimed
just before SMTP and marked after.

Order (ledger/outbox.py PRIORITY): receipts and notices about a unit's own document, then staff alerts, then
reminders, then reports; the next item is read again before each mail, so a receipt recorded meanwhile
overtakes everything still waiting. Limits: ``smtp.per_minute`` and ``smtp.per_day`` (a rolling 24 hours, as
Gmail counts); reminders and reports leave only while more than ``smtp.reserve_for_receipts`` of the day
remain, so a morning of reminders never leaves the afternoon's receipts waiting for tomorrow: what does not
fit waits (later that day, the next day) and is checked again when its turn comes.

A reminder is checked again just before it leaves (``recheck``, given by the caller that knows the plan,
pipeline/plan/sending.py): one the unit no longer owes is dropped and recorded as dropped, never sent.

An item is claimed ('sending') just before the SMTP conversation and marked 'sent' just after it: a crash
in between leaves it 'sending', and the next pass settles it (settle.py: looked up in the Sent folder).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from pipeline.config import SmtpConfig
from pipeline.errors import ConfigError, SmtpRejected, SmtpUnavailable
from pipeline.ledger.outbox import MAY_USE_RESERVE
from pipeline.ledger.schema import iso
from pipeline.ledger.store import Store
from pipeline.outbox.smtp import SmtpTransport, Transport

log = logging.getLogger(__name__)


RETRY_DELAYS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600)


@dataclass(frozen=True)
class Verdict:
    """What a recheck says of an item about to leave: send it as it is, drop it (with the reason staff read),
    or send it made again (``subject``/``message_id``/``raw``: a reminder now naming fewer obligations)."""

    action: str  # send | drop | rewrite
    reason: str = ""
    subject: str = ""
    message_id: str = ""
    raw: bytes = b""
    recipients: tuple[str, ...] = ()  # rewrite: the unit's addresses now (empty: as queued)


SEND = Verdict("send")
Recheck = Callable[[Any, datetime], Verdict]


@dataclass(frozen=True)
class Allowance:
    """How many mails may leave now: this minute, this day, and this day for what is not a receipt."""

    minute: int
    day: int
    ordinary: int

    @classmethod
    def of(cls, store: Store, cfg: SmtpConfig, now: datetime) -> Allowance:
        day_sent = store.sent_since(now - timedelta(days=1), limit=cfg.per_day)
        return cls(minute=cfg.per_minute - store.sent_since(now - timedelta(minutes=1), limit=cfg.per_minute),
                   day=cfg.per_day - day_sent, ordinary=cfg.per_day - cfg.receipt_reserve - day_sent)

    def purposes(self, sent: int) -> frozenset[str] | None:
        """What may leave after ``sent`` more mails: nothing (empty), receipts and alerts only, or all (None)."""
        if sent >= self.minute or sent >= self.day:
            return frozenset()
        return None if sent < self.ordinary else MAY_USE_RESERVE


# Items this process is handing to SMTP right now, per ledger: settle.py never touches them, however long the
# server takes (another process's claims are protected by the grace period and the lease).
_IN_FLIGHT: set[tuple[str, int]] = set()
_IN_FLIGHT_LOCK = threading.Lock()


def in_flight(store: Store) -> frozenset[int]:
    with _IN_FLIGHT_LOCK:
        return frozenset(oid for url, oid in _IN_FLIGHT if url == store.url)


def flush_outbox(store: Store, cfg: SmtpConfig, now: datetime,
                 transport_factory: Callable[[SmtpConfig], Transport] = SmtpTransport,
                 recheck: Recheck | None = None,
                 checkpoint: Callable[[str], None] = lambda _point: None,
                 claimer: str | None = None, may_send: Callable[[], bool] = lambda: True) -> dict[str, int]:
    """Send what is due, most awaited first, within the limits; the rest waits for its window.

    Returns counts: sent, retry, failed, dropped (reminders no longer owed) and waiting (due, not sent).
    ``claimer``: who claims (recorded in ``claimed_by``); ``may_send()``: asked before each claim (a worker
    that has lost its lease stops at once). Claims and sends are stamped ``now`` plus the time the flush has
    taken so far, so that the sending windows and the settling of interrupted sends see when they happened.
    """
    started = time.monotonic()

    def at() -> datetime:
        return now + timedelta(seconds=time.monotonic() - started)

    counts = {"sent": 0, "retry": 0, "failed": 0, "dropped": 0, "waiting": 0}
    allowance = Allowance.of(store, cfg, now)
    transport: Transport | None = None
    passed: set[int] = set()  # items not to look at again in this flush
    try:
        while True:
            purposes = allowance.purposes(counts["sent"])
            if purposes is not None and not purposes:
                break
            row = store.next_due(at(), purposes=purposes, skip=frozenset(passed))
            if row is None:
                break
            raw, recipients = row.raw, json.loads(row.recipients)
            if recheck is not None:
                try:
                    verdict = recheck(row, at())
                except Exception:  # one item that cannot be checked must not stop every other mail
                    log.exception("outbox item %s (%s) could not be checked; trying again in an hour", row.id, row.key)
                    store.defer_outbox(row.id, at() + timedelta(hours=1))
                    passed.add(row.id)
                    continue
                if verdict.action == "drop":
                    if store.drop_outbox(row.id, verdict.reason, at()):
                        counts["dropped"] += 1
                        log.info("outbox item %s (%s) dropped: %s", row.id, row.key, verdict.reason)
                    continue
                if verdict.action == "rewrite":
                    recipients = list(verdict.recipients) or recipients
                    store.rewrite_outbox(row.id, verdict.subject, verdict.message_id, verdict.raw, recipients)
                    raw = verdict.raw
            if not may_send():
                break
            if not store.claim_outbox(row.id, at(), claimed_by=claimer):
                passed.add(row.id)  # another sender claimed it first
                continue
            fresh = transport is None  # this item opens the connection
            with _IN_FLIGHT_LOCK:
                _IN_FLIGHT.add((store.url, row.id))
            try:
                if transport is None:
                    transport = transport_factory(cfg)
                checkpoint("before-smtp")  # crash tests (mailpass.CHECKPOINTS) stop the process here ...
                transport.send(raw, cfg.sender, recipients)
                checkpoint("after-smtp")  # ... or here: claimed, perhaps sent, not marked (settle.py)
            except SmtpRejected as exc:
                store.finish_outbox(row.id, "failed", at(), error=str(exc))
                counts["failed"] += 1
            except SmtpUnavailable as exc:
                delay = RETRY_DELAYS[min(row.attempts, len(RETRY_DELAYS) - 1)]
                store.finish_outbox(row.id, "pending", at(), error=str(exc),
                                    retry_at=at() + timedelta(seconds=delay))
                counts["retry"] += 1
                log.warning("outbox item %s will be retried in %ss: %s", row.id, delay, exc)
                if transport is not None:
                    transport.close()
                    transport = None
                if fresh:
                    # The server could not be reached at all: the rest waits for the next flush instead of
                    # each item paying the connection timeout (and a retry delay) in turn.
                    break
            except ConfigError as exc:
                # Raised before anything reached a server (a password's variable unset): surely not sent.
                store.finish_outbox(row.id, "pending", at(), error=str(exc), retry_at=at() + timedelta(minutes=5))
                raise
            else:
                store.finish_outbox(row.id, "sent", at())
                counts["sent"] += 1
            finally:
                with _IN_FLIGHT_LOCK:
                    _IN_FLIGHT.discard((store.url, row.id))
    finally:
        if transport is not None:
            transport.close()
    counts["waiting"] = sum(1 for r in store.waiting_outbox() if r.next_attempt_at <= iso(at()))
    return counts
