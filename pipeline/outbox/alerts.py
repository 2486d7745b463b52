"""Mail to district staff: an alert queued once under its key, and instants written as staff read them.

Used by the worker's liveness checks and by the outbox's receipt-delay check (plan/sending.py).
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pipeline.config import Config
from pipeline.ledger.outbox import OutboxItem
from pipeline.outbox.compose import build_mail

log = logging.getLogger(__name__)


def staff_alert(ctx: Any, key: str, subject: str, body: str, now: datetime) -> bool:
    """Queue one alert to staff under ``key`` (a key queued before adds nothing); False when none was queued."""
    cfg: Config = ctx.cfg
    if not cfg.staff:
        log.warning("alert %s not mailed: no staff configured: %s", key, subject)
        return False
    subject = f"[{cfg.organisation}] {subject}"
    mid, raw = build_mail(sender=cfg.smtp.sender, to=cfg.staff, subject=subject, text=body)
    return ctx.store.enqueue(OutboxItem(key=key, purpose="alert", recipients=tuple(cfg.staff), subject=subject,
                                        smtp_message_id=mid, raw=raw), now)


def local_time(dt: datetime, cfg: Config) -> str:
    """The instant as staff read it: hour and day in the configured time zone."""
    return dt.astimezone(cfg.tz).strftime("%H:%M ngày %d/%m/%Y")
