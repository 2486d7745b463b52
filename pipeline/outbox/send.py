"""Sending the outbox: what is due, within Gmail's limits, each item claimed before SMTP and marked after.

An item is claimed ('sending') before the SMTP conversation and marked 'sent' after it: a crash in
between leaves it 'uncertain' for staff rather than risking a second copy in a unit's inbox.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Callable

from pipeline.config import SmtpConfig
from pipeline.errors import SmtpRejected, SmtpUnavailable
from pipeline.ledger.store import Store
from pipeline.outbox.smtp import SmtpTransport, Transport

log = logging.getLogger(__name__)


RETRY_DELAYS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600)


def flush_outbox(store: Store, cfg: SmtpConfig, now: datetime,
                 transport_factory: Callable[[SmtpConfig], Transport] = SmtpTransport) -> dict[str, int]:
    """Send what is due, within the per-minute and per-day limits; the rest waits for its window.

    Each item is claimed ('sending') before it is handed to SMTP and marked after: if the process dies in
    between, the item stays 'sending' and the next pass makes it 'uncertain' (never resent by itself).
    """
    counts = {"sent": 0, "retry": 0, "failed": 0, "waiting": 0}
    budget = min(cfg.per_minute - store.sent_since(now - timedelta(minutes=1), limit=cfg.per_minute),
                 cfg.per_day - store.sent_since(now - timedelta(days=1), limit=cfg.per_day))
    due = store.due_outbox(now, limit=max(budget, 0) + 1000)
    transport: Transport | None = None
    try:
        for row in due:
            if counts["sent"] >= budget:
                counts["waiting"] += 1  # not claimed: it keeps its place for the next window
                continue
            if not store.claim_outbox(row.id, now):
                continue  # another sender claimed it first
            fresh = transport is None  # this item opens the connection
            try:
                if transport is None:
                    transport = transport_factory(cfg)
                transport.send(row.raw, cfg.sender, json.loads(row.recipients))
            except SmtpRejected as exc:
                store.finish_outbox(row.id, "failed", now, error=str(exc))
                counts["failed"] += 1
            except SmtpUnavailable as exc:
                delay = RETRY_DELAYS[min(row.attempts, len(RETRY_DELAYS) - 1)]
                store.finish_outbox(row.id, "pending", now, error=str(exc), retry_at=now + timedelta(seconds=delay))
                counts["retry"] += 1
                log.warning("outbox item %s will be retried in %ss: %s", row.id, delay, exc)
                if transport is not None:
                    transport.close()
                    transport = None
                if fresh:
                    # The server could not be reached at all: the rest waits for the next flush instead of
                    # each item paying the connection timeout (and a retry delay) in turn.
                    counts["waiting"] += len(due) - due.index(row) - 1
                    break
            else:
                store.finish_outbox(row.id, "sent", now)
                counts["sent"] += 1
    finally:
        if transport is not None:
            transport.close()
    return counts
