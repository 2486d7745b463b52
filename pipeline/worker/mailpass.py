"""One intake pass, read top to bottom.

A pass: finish what an earlier pass began (mail archived and recorded but not processed), then for each
batch of new mail: fetch it (one UID FETCH), archive every message (fsync'd), record them and move the
UID high-water mark (one transaction), read and validate the attachments, record outcomes and receipts
(one transaction), send the outbox, mark the mail on the server. One bad mail never stops a pass.

A crash anywhere leaves each message either unrecorded (fetched again: the mark did not move) or recorded
as 'received' (finished by ``recover`` on the next pass); never recorded twice, never answered twice.
A resent copy of a mail (same Message-ID, sender and files, composed again) is archived and recorded as a
copy of the first (``copy_of``), never answered: whether both arrive in one batch, two passes, or around a crash.
"""
from __future__ import annotations

import dataclasses
import logging
import traceback
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, ContextManager, Protocol, Sequence

from pipeline import forms
from pipeline.context import Context, bind_mailbox
from pipeline.errors import MessageParseError, TemporaryError
from pipeline.forms.blank import form_attachment
from pipeline.ledger.messages import RawRecord
from pipeline.ledger.outcomes import DocumentOutcome, OutcomeRecord
from pipeline.ledger.schema import from_iso
from pipeline.mail import mime
from pipeline.mail.copies import copy_key
from pipeline.mail.mailbox import Mailbox
from pipeline.mail.triage import triage
from pipeline.model import Attachment, DocumentReading, DocumentRecord, Finding, ParsedMail
from pipeline.outbox.compose import receipt_item
from pipeline.outbox.settle import settle_interrupted
from pipeline.plan.sending import send_due
from pipeline.outbox.receipts import document_view, receipt_view
from pipeline.outbox.standing import reading_records, unit_standings
from pipeline.plan import deadlines

log = logging.getLogger(__name__)

#: ``checkpoint(name)`` is called at these points of a pass (crash tests kill the process there).
RECORDING_CHECKPOINTS = ("after-archive", "after-outcomes")  # a mail recorded, nothing sent yet
SENDING_CHECKPOINTS = ("before-smtp", "after-smtp")  # a mail claimed for SMTP, not marked sent (outbox/settle.py)
CHECKPOINTS = RECORDING_CHECKPOINTS + SENDING_CHECKPOINTS


class MailboxLike(Protocol):
    def select(self, folder: str) -> int: ...
    def uids_above(self, last_uid: int) -> list[int]: ...
    def uids_since(self, day: date) -> list[int]: ...
    def fetch(self, uids: Sequence[int]) -> Any: ...
    def mark_processed(self, uids: Sequence[int]) -> None: ...


@dataclass
class PassSummary:
    fetched: int = 0
    new: int = 0
    duplicates: int = 0
    recovered: int = 0
    states: dict[str, int] = field(default_factory=dict)
    outbox: dict[str, int] = field(default_factory=dict)
    settled: dict[str, int] = field(default_factory=dict)  # interrupted sends settled (outbox/settle.py)
    uidvalidity_changed: bool = False
    error: str | None = None

    def count(self, state: str) -> None:
        self.states[state] = self.states.get(state, 0) + 1

    def add_outbox(self, got: dict[str, int]) -> None:
        for key, n in got.items():
            if key in ("sent", "retry", "failed", "error"):
                self.outbox[key] = self.outbox.get(key, 0) + n
            else:  # what is still waiting: the last flush says
                self.outbox[key] = n


def on_time_for(ctx: Context, kind: str, period: str | None, received_at: datetime, *, campaign: int,
                unit_id: str | None = None, accepted: bool = True) -> tuple[bool | None, datetime | None]:
    """(on time?, due) of a document of this kind and period in ``campaign``; (None, None) when no dated
    obligation of that campaign asks for it."""
    plan = ctx.campaigns.get(campaign)
    ob = deadlines.obligation_for(kind, period, plan.obligations) if plan else None
    if ob is None or not ob.enabled:
        return None, None
    counted = received_at
    if ctx.cfg.keep_first_attempt_date and unit_id and accepted:
        # A correction after a rejection is dated by the unit's first recorded attempt (plan's choice, config).
        first = ctx.store.first_received_at(unit_id, kind, period, campaign)
        if first is not None:
            counted = min(counted, first)
    return deadlines.is_on_time(ob, counted), ob.due_at


# -- one message --------------------------------------------------------------------------------------

def read_attachment(ctx: Context, att: Attachment, parsed: ParsedMail, unit: Any, arrival: int) -> DocumentReading:
    """Read one attachment as a document of the campaign it names, else of ``arrival`` (the mail's)."""
    try:
        reading = forms.read_document(att.filename, att.data, content_type=att.content_type,
                                      subject=parsed.subject, unit=unit, year=arrival,
                                      campaigns=ctx.campaigns.candidates(ctx.cfg.year), rules=ctx.rules)
    except Exception as exc:  # a reader bug is a finding on this document, never a dead pass
        log.exception("reader failed on %s", att.filename)
        reading = DocumentReading(kind="unknown", period=None, state="needs_review", findings=(Finding(
            code="reader-failed", severity="warning",
            message=f"Hệ thống chưa đọc được tệp này ({exc.__class__.__name__}); cán bộ LĐLĐ Quận sẽ xem trực tiếp.",
        ),))
    return reading if reading.campaign is not None else dataclasses.replace(reading, campaign=arrival)


def copy_of(ctx: Context, pk: int, raw: bytes, parsed: ParsedMail, row: Any) -> int | None:
    """The recorded message this one is a resent copy of (pipeline/mail/copies.py), or None.

    Its candidates are the messages recorded before it with the same Message-ID, read back from the archive:
    whatever state they reached, even none yet (an earlier copy in this batch, one a crash left 'received'),
    so the answer is the same in any pass, before or after any crash, and only the first copy is answered.
    """
    key = copy_key(parsed, raw)
    if key is None:
        return None
    recorded_id = row.message_id if row is not None else mime.header_message_id(raw)
    for earlier in ctx.store.earlier_with_message_id(recorded_id, key.sender, before=pk):
        try:
            earlier_raw = ctx.archive.get(earlier.sha256)
            earlier_mail = mime.parse_message(earlier_raw, trusted_authserv_ids=ctx.cfg.mailbox.trusted_authserv_ids)
        except (OSError, MessageParseError):  # unreadable: nothing says they are the same, so not a copy
            continue
        if copy_key(earlier_mail, earlier_raw) == key:
            return int(earlier.id)
    return None


def prepare_message(ctx: Context, pk: int, raw: bytes, received_at: datetime, row: Any,
                    pending: Sequence[DocumentRecord] = ()) -> OutcomeRecord:
    """Parse and triage one recorded message, read its attachments and build its receipt; write nothing.

    ``row`` is the message's row (for its generation and the desk's decisions), None when unknown; ``pending``:
    the documents of earlier mail of the batch, not recorded yet (the receipt's standing counts them).
    """
    cfg = ctx.cfg
    generation = row.generation if row is not None else 0
    parsed = mime.parse_message(raw, own_addresses=cfg.own_addresses,
                                trusted_authserv_ids=cfg.mailbox.trusted_authserv_ids)
    units = ctx.units
    arrival = ctx.arrival_campaign(received_at)
    # Staff decisions from the desk, recorded on the message so that a crash before this point keeps them.
    assigned = units.by_id(row.assigned_unit_id) if row is not None and row.assigned_unit_id else None
    verdict = triage(parsed, units.by_email(parsed.from_addr), assigned=assigned,
                     released=bool(row is not None and row.released), own_addresses=cfg.own_addresses,
                     too_early=None if arrival is not None else ctx.too_early(received_at),
                     copy_of=None if assigned is not None else copy_of(ctx, pk, raw, parsed, row))
    unit = verdict.unit
    outcomes: list[DocumentOutcome] = []
    items = []
    if verdict.state == "processed":
        assert arrival is not None  # triage ignores mail from before the first campaign
        views = []
        for att in parsed.attachments:
            reading = read_attachment(ctx, att, parsed, unit, arrival.year)
            if reading.state == "rejected" and reading.entries:
                # The receipt tells the unit that nothing from a rejected file was recorded: keep it so.
                reading = dataclasses.replace(reading, entries=())
            campaign = reading.campaign or arrival.year
            on_time, due = on_time_for(ctx, reading.kind, reading.period, received_at, campaign=campaign,
                                       unit_id=unit.unit_id, accepted=reading.state == "accepted")
            outcomes.append(DocumentOutcome(part=att.part, filename=att.filename, content_type=att.content_type,
                                            sha256=att.sha256, size=len(att.data), reading=reading, on_time=on_time))
            views.append(document_view(att.filename, reading, on_time, due.astimezone(cfg.tz) if due else None,
                                       arrival=arrival.year, rules=ctx.rules))
        # The unit's standing after this mail, in its documents' campaigns and the current one: the ledger's
        # documents plus this batch's, which are written together with this receipt.
        readings = [o.reading for o in outcomes]
        standings = unit_standings(ctx, unit, [*(r.campaign or arrival.year for r in readings), arrival.year],
                                   received_at, [*pending, *reading_records(unit.unit_id, readings, received_at)])
        view = receipt_view(organisation=cfg.organisation, unit_name=unit.name, standings=standings,
                            received_at=received_at.astimezone(cfg.tz), subject=parsed.subject, documents=views)
        # A rejected form comes back with a clean copy of the right blank form to fill in again.
        rejected = dict.fromkeys((o.reading.kind, o.reading.campaign or arrival.year)
                                 for o in outcomes if o.reading.state == "rejected")
        forms_back = [f for f in (form_attachment(k, year=y, unit_name=unit.name, rules=ctx.rules)
                                  for k, y in rejected) if f]
        items.append(receipt_item(ctx.env, view, sender=cfg.smtp.sender, to=[parsed.from_addr],
                                  key=f"receipt:{pk}:{generation}", message_pk=pk, unit_id=unit.unit_id,
                                  in_reply_to=parsed.message_id, references=list(parsed.references),
                                  subject=parsed.subject, attachments=forms_back, campaign=arrival.year))
    return OutcomeRecord(pk=pk, state=verdict.state, reason=verdict.reason, sender=parsed.from_addr,
                         from_name=parsed.from_name, subject=parsed.subject,
                         unit_id=unit.unit_id if unit else None, outcomes=tuple(outcomes),
                         outbox_items=tuple(items), bounce=verdict.bounce,
                         campaign=arrival.year if arrival else None, duplicate_of=verdict.duplicate_of)


def process_message(ctx: Context, pk: int, raw: bytes, received_at: datetime, now: datetime) -> str:
    """Prepare one recorded message and record its outcome with its receipt."""
    rec = prepare_message(ctx, pk, raw, received_at, ctx.store.message(pk))
    ctx.store.record_outcomes([rec], now)
    return rec.state


def _failed(ctx: Context, pk: int, exc: Exception, now: datetime, summary: PassSummary) -> None:
    """What a pass does with a message whose processing raised."""
    if isinstance(exc, TemporaryError):
        log.warning("message %s left for the next pass: %s", pk, exc)
        ctx.store.note_attempt(pk, f"tạm thời: {exc}", now)
        summary.count("received")
    elif isinstance(exc, MessageParseError):
        ctx.store.mark_error(pk, f"không phân tích được thư: {exc}", now)
        summary.count("error")
    else:
        log.error("message %s failed: %s\n%s", pk, exc,
                  "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        ctx.store.mark_error(pk, f"lỗi nội bộ khi xử lý: {exc.__class__.__name__}: {exc}", now)
        summary.count("error")


def process_safely(ctx: Context, pk: int, raw: bytes, received_at: datetime, now: datetime,
                   summary: PassSummary) -> bool:
    """``process_message``, a failure recorded on the message instead of raised."""
    try:
        state = process_message(ctx, pk, raw, received_at, now)
    except Exception as exc:
        _failed(ctx, pk, exc, now, summary)
        return False
    summary.count(state)
    return True


# -- a batch ------------------------------------------------------------------------------------------

def process_batch(ctx: Context, items: Sequence[tuple[int, bytes, datetime]], now: datetime,
                  summary: PassSummary) -> list[int]:
    """Process several recorded messages; their outcomes and receipts are written in ONE transaction.

    ``items`` are (message id, raw bytes, received_at). Returns the ids that were processed. A message
    whose preparation fails is recorded on its own; when the batch's transaction fails, each message is
    recorded on its own instead, so one bad mail never costs the others.
    """
    if not items:
        return []
    rows = ctx.store.messages_by_id([pk for pk, _raw, _at in items])
    records: list[OutcomeRecord] = []
    pending: list[DocumentRecord] = []  # what the batch will record, for the receipts' standings
    for pk, raw, received_at in items:
        try:
            rec = prepare_message(ctx, pk, raw, received_at, rows.get(pk), pending)
        except Exception as exc:
            _failed(ctx, pk, exc, now, summary)
        else:
            records.append(rec)
            pending += reading_records(rec.unit_id, [o.reading for o in rec.outcomes], received_at)
    try:
        ctx.store.record_outcomes(records, now)
        done = records
    except TemporaryError as exc:  # database busy: all of them wait for the next pass
        for rec in records:
            _failed(ctx, rec.pk, exc, now, summary)
        return []
    except Exception as exc:  # noqa: BLE001 - fall back to one transaction per message
        log.warning("recording %d outcomes together failed (%s); recording them one by one", len(records), exc)
        done = []
        for rec in records:
            try:
                ctx.store.record_outcomes([rec], now)
            except Exception as one:
                _failed(ctx, rec.pk, one, now, summary)
            else:
                done.append(rec)
    for rec in done:
        summary.count(rec.state)
    return [rec.pk for rec in done]


# -- the pass -----------------------------------------------------------------------------------------

def recover(ctx: Context, now: datetime, summary: PassSummary) -> None:
    """Finish messages an earlier pass archived and recorded but did not process."""
    rows = ctx.store.messages_in_state("received")
    size = max(1, ctx.cfg.mailbox.batch_size)
    for start in range(0, len(rows), size):
        items = []
        for row in rows[start:start + size]:
            try:
                raw = ctx.archive.get(row.sha256)
            except OSError as exc:
                ctx.store.mark_error(row.id, f"không đọc được bản lưu trữ: {exc}", now)
                summary.count("error")
                continue
            summary.recovered += 1
            items.append((row.id, raw, from_iso(row.received_at)))
        process_batch(ctx, items, now, summary)


def fetch_new(ctx: Context, mailbox: MailboxLike, clock: Callable[[], datetime], summary: PassSummary, *,
              send: Callable[[], None] = lambda: None, progress: Callable[[int, int], None] | None = None,
              checkpoint: Callable[[str], None] = lambda _point: None) -> None:
    """New mail above the UID high-water mark, batch by batch: fetch, archive, record (and move the mark),
    process, send, mark on the server."""
    folder = ctx.cfg.mailbox.folder
    uidvalidity = mailbox.select(folder)
    known = ctx.store.poll_state(folder)
    last_uid = 0
    if known is not None:
        if known[0] == uidvalidity:
            last_uid = known[1]
        else:
            summary.uidvalidity_changed = True
            log.warning("UIDVALIDITY of %s changed (%s → %s): re-scanning; duplicates are recognised",
                        folder, known[0], uidvalidity)
    if last_uid == 0:
        # First contact (or a renumbered folder): only mail since the horizon is asked for at all, so years of
        # history are not downloaded. A day early: SINCE compares dates in the server's zone; triage judges the
        # exact instant.
        uids = mailbox.uids_since(ctx.horizon(clock()).astimezone(ctx.cfg.tz).date() - timedelta(days=1))
    else:
        uids = mailbox.uids_above(last_uid)
    size = max(1, ctx.cfg.mailbox.batch_size)
    for start in range(0, len(uids), size):
        batch = uids[start:start + size]
        fetched = list(mailbox.fetch(batch))
        summary.fetched += len(fetched)
        stored = ctx.archive.put_many([f.raw for f in fetched])  # on disk before anything is recorded
        results = ctx.store.record_raw_batch(
            [RawRecord(message_id=mime.header_message_id(f.raw), sha256=digest, gm_msgid=f.gm_msgid, uid=f.uid,
                       size=len(f.raw), received_at=f.internaldate) for f, (digest, _path) in zip(fetched, stored)],
            folder=folder, uidvalidity=uidvalidity, last_uid=max(batch), now=clock())
        fresh = [(pk, f) for f, (pk, created) in zip(fetched, results) if created]
        summary.new += len(fresh)
        summary.duplicates += len(fetched) - len(fresh)
        if fresh:
            checkpoint("after-archive")
        done = set(process_batch(ctx, [(pk, f.raw, f.internaldate) for pk, f in fresh], clock(), summary))
        if fresh:
            checkpoint("after-outcomes")
        send()  # this batch's receipts leave before the next batch is read
        mailbox.mark_processed([f.uid for pk, f in fresh if pk in done])
        if progress is not None:
            for handled in range(start + 1, start + len(batch) + 1):
                _report(progress, handled, len(uids))


def _report(progress: Callable[[int, int], None], done: int, total: int) -> None:
    try:
        progress(done, total)
    except Exception:  # a progress display must never cost a pass
        log.exception("progress callback failed")


def run_pass(ctx: Context, *, mailbox_factory: Callable[[], ContextManager[MailboxLike]] | None = None,
             clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
             transport_factory: Any = None, progress: Callable[[int, int], None] | None = None,
             checkpoint: Callable[[str], None] = lambda _point: None) -> PassSummary:
    """One intake pass. A mailbox failure is recorded in the summary; the outbox is flushed regardless.

    ``progress(done, total)``, when given, is called for each new message once its batch is done
    (``total``: the new UIDs found). ``summary.outbox`` counts what the pass sent, retried or failed, and what still waits.
    ``checkpoint(name)`` is called at each of ``CHECKPOINTS`` (crash tests stop the process there).
    """
    summary = PassSummary()
    now = clock()
    kwargs = {"transport_factory": transport_factory} if transport_factory else {}

    def send() -> None:
        try:
            summary.add_outbox(send_due(ctx, clock(), checkpoint=checkpoint, **kwargs))
        except TemporaryError as exc:
            log.error("outbox not flushed: %s", exc)
            summary.outbox.pop("waiting", None)  # unknown now: an earlier batch's figure would mislead
            summary.add_outbox({"error": 1})

    recover(ctx, now, summary)
    factory = mailbox_factory or (lambda: Mailbox(ctx.cfg.mailbox))
    bind_mailbox(ctx.store, ctx.cfg)  # this ledger reads this mailbox from now on (context.py)
    settled = False
    try:
        with factory() as mailbox:
            # Sends a crash cut off are settled first (the Sent folder is read over this connection).
            _settle(ctx, mailbox, now, summary)
            settled = True
            fetch_new(ctx, mailbox, clock, summary, send=send, progress=progress, checkpoint=checkpoint)
    except TemporaryError as exc:
        summary.error = str(exc)
        log.error("pass could not complete: %s", exc)
    if not settled:
        _settle(ctx, None, now, summary)
    send()
    return summary


def _settle(ctx: Context, mailbox: Any, now: datetime, summary: PassSummary) -> None:
    """Interrupted sends settled; a failure to settle is logged and never costs the pass its mail."""
    try:
        summary.settled = settle_interrupted(ctx, mailbox, now)
    except Exception:
        log.exception("interrupted sends not settled this time")


def reprocess(ctx: Context, pk: int, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> str:
    """Replay a recorded message from its archived copy (after a fix); a new receipt reflects the new outcome."""
    row = ctx.store.message(pk)
    if row is None:
        raise KeyError(pk)
    raw = ctx.archive.get(row.sha256)
    now = clock()
    ctx.store.reset_for_reprocess(pk, now)
    process_safely(ctx, pk, raw, from_iso(row.received_at), now, PassSummary())
    send_due(ctx, clock())
    after = ctx.store.message(pk)
    return after.state if after is not None else "unknown"
