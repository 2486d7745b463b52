"""A ledger that already holds thousands of answered mails, written through the ledger's own batch writes.

Recording 10,000 mails with real passes takes many minutes on a shared 2-core machine; an idle pass only
needs them recorded. So each mail already in the folder is recorded as a pass records it (``record_raw_batch``
with the folder's UID mark, then ``record_outcomes``: 'processed', with its receipt in the outbox), and the
receipts are then marked sent long ago. The archive is not written (an idle pass does not read it).
This is the only part of the bench that imports the ledger's modules: follow them here when they move.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

import rig

from pipeline.context import Context
from pipeline.ledger.messages import RawRecord
from pipeline.ledger.outbox import OutboxItem
from pipeline.ledger.outcomes import OutcomeRecord
from pipeline.ledger.schema import iso, outbox

UNIT_IDS = {"cdcs.ubnd@longbien.gov.vn": "cq001", "thaimo.longbien@gmail.com": "th014",
            "hieutruong.aimo@gmail.com": "th014", "congdoan@maydg.com.vn": "dn027"}
BATCH = 1000


def record_answered(ctx: Context, dc: Any, folder: str, mails: list[tuple[bytes, tuple, datetime]]) -> int:
    """Record the folder's first ``len(mails)`` messages (``mails`` as appended, in order) as processed and
    answered; the folder's UID mark moves past them. Returns how many were recorded."""
    with dc.client() as c:
        uidvalidity = int(c.select_folder(folder, readonly=True)[b"UIDVALIDITY"])
        uids = sorted(c.search(["ALL"]))[:len(mails)]
        c.logout()
    now = datetime.now(timezone.utc)
    receipt = rig.samplemail.gmail_message(rig.DISTRICT, rig.SENDERS[0], "Re: Báo cáo nhanh",
                                           "Xác nhận đã nhận thư của đơn vị. " * 60)
    recorded = 0
    for start in range(0, len(uids), BATCH):
        chunk = list(zip(uids[start:start + BATCH], mails[start:start + BATCH]))
        heads = [BytesHeaderParser(policy=compat32).parsebytes(raw) for _uid, (raw, _f, _d) in chunk]
        got = ctx.store.record_raw_batch(
            [RawRecord(message_id=" ".join(str(h.get("Message-ID") or "").split()),
                       sha256=hashlib.sha256(raw).hexdigest(), gm_msgid=None, uid=uid, size=len(raw), received_at=date)
             for (uid, (raw, _f, date)), h in zip(chunk, heads)],
            folder=folder, uidvalidity=uidvalidity, last_uid=chunk[-1][0], now=now)
        records = []
        for (pk, created), h in zip(got, heads):
            if not created:
                continue
            sender = str(h["From"]).rsplit("<", 1)[-1].rstrip(">").strip().lower()
            unit = UNIT_IDS.get(sender)
            records.append(OutcomeRecord(
                pk=pk, state="processed", reason=None, sender=sender, from_name=None, subject=str(h["Subject"]),
                unit_id=unit, outbox_items=(OutboxItem(
                    key=f"receipt:{pk}:0", purpose="receipt", recipients=(sender,), subject="Re: Báo cáo nhanh",
                    smtp_message_id=f"<receipt-{pk}@bench>", raw=receipt, message_pk=pk, unit_id=unit),)))
        ctx.store.record_outcomes(records, now)
        recorded += len(records)
    long_ago = iso(rig.BASE_DATE + timedelta(days=1))
    with ctx.store.engine.begin() as c:  # one statement instead of a claim and a finish per receipt
        c.execute(outbox.update().where(outbox.c.state == "pending").values(state="sent", attempts=1, sent_at=long_ago))
    return recorded
