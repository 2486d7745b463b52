"""Sends cut off by a crash, settled without a person: was the mail sent or not?

An item is claimed ('sending') just before SMTP and marked 'sent' just after; a worker killed in between
leaves it 'sending', and only the SMTP server knows. Gmail keeps every mail sent through its SMTP in the
account's Sent folder ("[Gmail]/Sent Mail"), so with ``smtp.sent_folder`` the next pass looks the item's
Message-ID up there over IMAP: found, it was sent; not found once GRACE has passed since the claim (time
for the server to file its copy, and longer than a live sender's SMTP conversation may take), it goes again
with the same Message-ID. Without a sent folder ``smtp.unsettled`` chooses: "resend" after the grace
period, or "staff" (uncertain: `intake outbox retry`). Claims younger than GRACE are left alone: they may be
a live sender's (the desk's, `intake poll`'s), and they are settled by a later pass if they stay; so are the
claims of the worker holding the lease now and this process's sends in progress, whatever their age: only a
dead worker's work is touched. A sent folder that cannot be read for an hour: as if there were none.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pipeline.errors import TemporaryError
from pipeline.ledger.leases import LOCK_NAME
from pipeline.ledger.schema import from_iso
from pipeline.outbox.send import in_flight
from pipeline.runtime import holder_id

if TYPE_CHECKING:
    from pipeline.context import Context

log = logging.getLogger(__name__)

GRACE = timedelta(seconds=60)
GIVE_UP = timedelta(hours=1)  # the sent folder unreadable this long: settle as smtp.unsettled says


def settle_interrupted(ctx: Context, mailbox: Any | None, now: datetime) -> dict[str, int]:
    """Settle every send interrupted at least GRACE ago; ``mailbox``: the pass's IMAP connection (the same
    account as SMTP, as with Gmail), or None when it could not be opened."""
    counts = {"sent": 0, "resend": 0, "uncertain": 0}
    store = ctx.store
    lease = store.lock_row(LOCK_NAME)
    # The worker that holds the lease now is alive: its claims are its own business, however old.
    live = [lease.holder] if lease is not None and not lease.expired and lease.holder != holder_id() else []
    busy = in_flight(store)  # this process's sends in progress
    rows = [r for r in store.interrupted_sends(now - GRACE, live=live) if r.id not in busy]
    if not rows:
        return counts
    smtp = ctx.cfg.smtp
    folder = None
    found: set[str] = set()
    if smtp.sent_folder:
        try:
            if mailbox is None:
                raise TemporaryError("hộp thư chưa mở được")
            folder = mailbox.sent_folder(smtp.sent_folder)
            found = mailbox.holding(folder, [r.smtp_message_id for r in rows]) if folder else set()
        except TemporaryError as exc:
            # Looked up again by the next pass; after GIVE_UP the send is settled as if there were no folder.
            rows = [r for r in rows if from_iso(r.next_attempt_at) <= now - GIVE_UP]
            log.warning("interrupted sends not looked up in the sent folder now (%s); %d older than %s settled "
                        "by smtp.unsettled", exc, len(rows), GIVE_UP)
        else:
            if folder is None:
                log.warning("smtp.sent_folder %r not found on the IMAP server: interrupted sends follow "
                            "smtp.unsettled (%s)", smtp.sent_folder, smtp.unsettled)
    for row in rows:
        if folder is not None:
            if row.smtp_message_id in found:
                outcome, note = "sent", f"đã thấy trong thư mục {folder} sau khi tiến trình gửi bị ngắt"
            else:
                outcome, note = "pending", (f"không thấy trong thư mục {folder} sau khi tiến trình gửi bị ngắt: "
                                            "gửi lại (cùng Message-ID)")
        elif smtp.unsettled == "resend":
            outcome, note = "pending", "tiến trình gửi bị ngắt, không kiểm tra được thư mục thư đã gửi: gửi lại"
        else:
            outcome, note = "uncertain", ("tiến trình gửi bị ngắt giữa chừng: không rõ thư đã đi chưa; kiểm tra "
                                          "thư mục thư đã gửi rồi dùng `intake outbox retry` nếu cần")
        if store.settle_send(row.id, outcome, note, now):
            counts["resend" if outcome == "pending" else outcome] += 1
            log.info("interrupted send #%s (%s) settled: %s", row.id, row.key, outcome)
    return counts
