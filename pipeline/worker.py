"""One intake pass, and the pieces the scheduler runs.

A pass: finish what an earlier pass began (mail archived and recorded but not yet processed), fetch new
mail by UID in batches, archive each raw message and record it before anything else happens to it, move
the UID high-water mark, then process each message and flush the outbox. One bad mail never stops a pass.

Per fetched batch there are two transactions, not two per message: the batch's raw records together with
the new UID high-water mark, then (after every message is read and its receipt built) the batch's outcomes
and receipts. The archive files are fsync'd before the first one. See ``fetch_new``.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any, Callable, ContextManager, Protocol, Sequence

import jinja2

from pipeline import archive, deadlines, forms, mime, mimesplit, parsepool
from pipeline.archive import Archive
from pipeline.blankforms import form_attachment
from pipeline.config import Config
from pipeline.errors import MessageParseError, TemporaryError
from pipeline.mailbox import Fetched, Mailbox
from pipeline.model import Attachment, DocumentReading, Finding, ParsedMail
from pipeline.notify import flush_outbox, receipt_item, template_env
from pipeline.receipts import document_view, receipt_view
from pipeline.store import DocumentOutcome, OutcomeRecord, RawRecord, Store, from_iso
from pipeline.units import UnitDirectory, load_units

log = logging.getLogger(__name__)

#: In a backlog (several batches), a batch with at least this many new messages is parsed in the parse
#: process (pipeline/parsepool.py) while the batch before it is processed; smaller ones are parsed here.
PARSE_PROCESS_MIN = 8
FAULT_ENV = "INTAKE_FAULT"  # test hook: "exit-after-archive" kills the process mid-pass (crash tests)


class MailboxLike(Protocol):
    def select(self, folder: str) -> int: ...
    def uids_above(self, last_uid: int) -> list[int]: ...
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
    uidvalidity_changed: bool = False
    error: str | None = None

    def count(self, state: str) -> None:
        self.states[state] = self.states.get(state, 0) + 1


class Context:
    """Everything a pass needs, built once from config."""

    def __init__(self, cfg: Config, *, units: UnitDirectory | None = None) -> None:
        self.cfg = cfg
        self.store = Store(cfg.database_url)
        self.archive = Archive(cfg.archive_dir)
        self._fixed_units = units
        self._units: UnitDirectory | None = None
        self._units_stamp: tuple[int, int] | None = None
        self.units  # load (and check) now: a bad units file fails at start, not mid-pass
        self.env: jinja2.Environment = template_env(cfg.templates_dir)
        from pipeline.rules import load_rules

        self.rules = load_rules(cfg.rules_dir)
        self.obligations = _load_obligations(cfg)


    @property
    def units(self) -> UnitDirectory:
        """The unit list, re-read when its file changes (the desk replaces it while the worker runs)."""
        if self._fixed_units is not None:
            return self._fixed_units
        try:
            st = self.cfg.units_file.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if self._units is None or (stamp is not None and stamp != self._units_stamp):
            try:
                self._units = load_units(self.cfg.units_file)
                self._units_stamp = stamp
            except Exception:
                if self._units is None:
                    raise
                log.exception("units file changed but could not be read; keeping the previous list")
        assert self._units is not None
        return self._units


def _load_obligations(cfg: Config) -> tuple[Any, ...]:
    path = cfg.rules_dir / "deadlines.yaml"
    return deadlines.load_obligations(path, cfg.year, cfg.timezone) if path.is_file() else ()


def on_time_for(ctx: Context, kind: str, period: str | None, received_at: datetime, *,
                unit_id: str | None = None, accepted: bool = True) -> tuple[bool | None, datetime | None]:
    """(on time?, due) of a document of this kind and period; (None, None) when no dated obligation asks for it."""
    ob = deadlines.obligation_for(kind, period, ctx.obligations)
    if ob is None or not ob.enabled:
        return None, None
    counted = received_at
    if ctx.cfg.keep_first_attempt_date and unit_id and accepted:
        # A correction after a rejection is dated by the unit's first recorded attempt (plan's choice, config).
        first = ctx.store.first_received_at(unit_id, kind, period)
        if first is not None:
            counted = min(counted, first)
    return deadlines.is_on_time(ob, counted), ob.due_at


def header_message_id(raw: bytes) -> str:
    """The Message-ID header as recorded for dedup: what BytesHeaderParser(compat32) reads, whitespace collapsed."""
    head = raw[:262144]
    try:
        value = _fast_message_id(head)
        if value is None:
            headers = BytesHeaderParser(policy=compat32).parsebytes(head)
            value = headers.get("Message-ID") or headers.get("Message-Id") or ""
        return " ".join(str(value).split())[:900]
    except Exception:  # a header block we cannot read still gets archived and recorded
        return ""


def _fast_message_id(head: bytes) -> str | None:
    """The same value without the email package's parser, or None when the header block is not plain
    (mimesplit's rules) or the value holds 8-bit bytes (compat32 turns those into a Header object)."""
    try:
        items = mimesplit.header_items(head.decode("ascii", "surrogateescape"), compat32)
    except mimesplit.Unusual:
        return None
    for name, value in items:
        if name.lower() == "message-id":
            return value if value.isascii() else None
    return ""


def read_attachment(ctx: Context, att: Attachment, parsed: ParsedMail, unit: Any) -> DocumentReading:
    try:
        return forms.read_document(att.filename, att.data, content_type=att.content_type, subject=parsed.subject,
                                   unit=unit, year=ctx.cfg.year, rules=ctx.rules)
    except Exception as exc:  # a reader bug is a finding on this document, never a dead pass
        return _reader_failed(att, exc)


def _reader_failed(att: Attachment, exc: Exception) -> DocumentReading:
    log.exception("reader failed on %s", att.filename)
    return DocumentReading(kind="unknown", period=None, state="needs_review", findings=(Finding(
        code="reader-failed", severity="warning",
        message=f"Hệ thống chưa đọc được tệp này ({exc.__class__.__name__}); cán bộ LĐLĐ Quận sẽ xem trực tiếp.",
    ),))


@dataclass
class _Draft:
    """A message parsed and classified, its attachments handed to the reader; the receipt not built yet."""
    pk: int
    generation: int
    received_at: datetime
    parsed: ParsedMail
    sender: str | None
    unit: Any
    state: str
    reason: str | None
    bounce: tuple[tuple[str, ...], str | None] | None
    reading: list[tuple[Attachment, Any]]  # (attachment, its reading or the reader's ticket for it)


def _classify(ctx: Context, pk: int, raw: bytes, received_at: datetime, row: Any,
              batch: forms.DocumentBatch | None, ticket: parsepool.Ticket | None = None) -> _Draft:
    """Parse and classify one message; its attachments go to the reader (``batch``) or are read now.
    ``ticket``: the message was handed to the parse process; its ParsedMail comes from there."""
    cfg = ctx.cfg
    generation = row.generation if row is not None else 0
    if ticket is not None:
        parsed = ticket.result()
    else:
        parsed = mime.parse_message(raw, own_addresses=cfg.own_addresses,
                                    trusted_authserv_ids=cfg.mailbox.trusted_authserv_ids)
    sender = parsed.from_addr
    units = ctx.units
    unit = units.by_email(sender)
    # Staff decisions from the desk, recorded on the message so that a crash before this point keeps them.
    assigned = units.by_id(row.assigned_unit_id) if row is not None and row.assigned_unit_id else None
    released = bool(row is not None and row.released)
    state, reason = "processed", None
    bounce = None
    if assigned is not None:
        unit = assigned  # a person looked at it and said which unit sent it
    elif sender and sender in cfg.own_addresses:
        state, reason = "ignored", "thư do chính hộp thư LĐLĐ Quận gửi đi"
    elif parsed.kind == "bounce":
        state, reason = "ignored", parsed.kind_reason or "thư báo không gửi được (bounce)"
        bounce = (parsed.bounced_recipients, parsed.bounced_message_id)
    elif parsed.kind == "auto_reply":
        state, reason = "ignored", parsed.kind_reason or "thư trả lời tự động"
    elif parsed.auth_failure and not released:
        state = "quarantined"
        reason = f"địa chỉ người gửi {sender} không qua kiểm tra xác thực của máy chủ ({parsed.auth_failure}); có thể bị giả mạo"
    elif not sender:
        state, reason = "quarantined", "thư không có địa chỉ người gửi đọc được"
    elif unit is None:
        state, reason = "quarantined", f"địa chỉ {sender} không có trong danh sách đơn vị"
    reading: list[tuple[Attachment, Any]] = []
    if state == "processed":
        for att in parsed.attachments:
            if batch is None:
                reading.append((att, read_attachment(ctx, att, parsed, unit)))
                continue
            try:
                reading.append((att, batch.submit(att.filename, att.data, content_type=att.content_type,
                                                  subject=parsed.subject, unit=unit, year=cfg.year)))
            except Exception as exc:  # a reader bug is a finding on this document, never a dead pass
                reading.append((att, _reader_failed(att, exc)))
    return _Draft(pk=pk, generation=generation, received_at=received_at, parsed=parsed, sender=sender, unit=unit,
                  state=state, reason=reason, bounce=bounce, reading=reading)


def _complete(ctx: Context, d: _Draft, batch: forms.DocumentBatch | None) -> OutcomeRecord:
    """The readings of a classified message, its documents' deadlines and its receipt."""
    cfg = ctx.cfg
    parsed, unit, received_at = d.parsed, d.unit, d.received_at
    outcomes: list[DocumentOutcome] = []
    items = []
    if d.state == "processed":
        assert unit is not None
        views = []
        for att, got in d.reading:
            if isinstance(got, DocumentReading) or batch is None:
                reading = got
            else:
                try:
                    reading = batch.result(got)
                except Exception as exc:  # as read_attachment: a finding, never a dead pass
                    reading = _reader_failed(att, exc)
            if reading.state == "rejected" and reading.entries:
                # The receipt tells the unit that nothing from a rejected file was recorded: keep it so.
                reading = dataclasses.replace(reading, entries=())
            on_time, due = on_time_for(ctx, reading.kind, reading.period, received_at, unit_id=unit.unit_id,
                                       accepted=reading.state == "accepted")
            outcomes.append(DocumentOutcome(part=att.part, filename=att.filename, content_type=att.content_type,
                                            sha256=att.sha256, size=len(att.data), reading=reading, on_time=on_time))
            views.append(document_view(att.filename, reading, on_time, due.astimezone(cfg.tz) if due else None))
        view = receipt_view(organisation=cfg.organisation, unit_name=unit.name,
                            received_at=received_at.astimezone(cfg.tz), subject=parsed.subject, documents=views)
        refs = list(parsed.references)
        # A rejected form comes back with a clean copy of the right blank form to fill in again.
        rejected_kinds = dict.fromkeys(o.reading.kind for o in outcomes if o.reading.state == "rejected")
        forms_back = [f for f in (form_attachment(k, year=cfg.year, unit_name=unit.name) for k in rejected_kinds) if f]
        items.append(receipt_item(ctx.env, view, sender=cfg.smtp.sender, to=[d.sender],
                                  key=f"receipt:{d.pk}:{d.generation}", message_pk=d.pk, unit_id=unit.unit_id,
                                  in_reply_to=parsed.message_id, references=refs, subject=parsed.subject,
                                  attachments=forms_back))
    return OutcomeRecord(pk=d.pk, state=d.state, reason=d.reason, sender=d.sender, from_name=parsed.from_name,
                         subject=parsed.subject, unit_id=unit.unit_id if unit else None, outcomes=tuple(outcomes),
                         outbox_items=tuple(items), bounce=d.bounce)


def prepare_message(ctx: Context, pk: int, raw: bytes, received_at: datetime, row: Any) -> OutcomeRecord:
    """Classify one recorded message, read its attachments and build its receipt; write nothing.

    ``row`` is the message's row (for its generation and the desk's decisions), None when unknown.
    """
    return _complete(ctx, _classify(ctx, pk, raw, received_at, row, None), None)


def process_message(ctx: Context, pk: int, raw: bytes, received_at: datetime, now: datetime) -> str:
    """Classify one recorded message, read its attachments and record the outcome with its receipt."""
    rec = prepare_message(ctx, pk, raw, received_at, ctx.store.message(pk))
    ctx.store.record_outcome(pk, state=rec.state, reason=rec.reason, sender=rec.sender, from_name=rec.from_name,
                             subject=rec.subject, unit_id=rec.unit_id, outcomes=rec.outcomes,
                             outbox_items=rec.outbox_items, bounce=rec.bounce, now=now)
    return rec.state


def _failed(ctx: Context, pk: int, exc: Exception, now: datetime, summary: PassSummary) -> None:
    """What a pass does with a message whose processing raised (the same for one message or a batch)."""
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


def _process_safely(ctx: Context, pk: int, raw: bytes, received_at: datetime, now: datetime,
                    summary: PassSummary) -> bool:
    try:
        state = process_message(ctx, pk, raw, received_at, now)
    except Exception as exc:
        _failed(ctx, pk, exc, now, summary)
        return False
    summary.count(state)
    return True


def process_batch(ctx: Context, items: Sequence[tuple[int, bytes, datetime]], now: datetime,
                  summary: PassSummary, tickets: Sequence[parsepool.Ticket] | None = None) -> list[int]:
    """Process several recorded messages; their outcomes and receipts are written in ONE transaction.

    ``items`` are (message id, raw bytes, received_at); ``tickets``, when given, one per item: the
    messages were handed to the parse process (a backlog). Returns the ids that were processed. A message
    whose reading fails is handled on its own, exactly as ``_process_safely`` would; when the batch's
    transaction fails, each message is recorded on its own instead, so one bad mail never costs the others.
    """
    if not items:
        return []
    rows = ctx.store.messages_by_id([pk for pk, _raw, _at in items])
    records: list[OutcomeRecord] = []
    drafts: list[_Draft] = []
    # All attachments go to the reader as their message is parsed: it reads them while the next
    # messages are parsed; the receipts are built once the readings are back.
    with forms.DocumentBatch(ctx.rules) as batch:
        for i, (pk, raw, received_at) in enumerate(items):
            try:
                drafts.append(_classify(ctx, pk, raw, received_at, rows.get(pk), batch,
                                        tickets[i] if tickets is not None else None))
            except Exception as exc:
                _failed(ctx, pk, exc, now, summary)
        for d in drafts:
            try:
                records.append(_complete(ctx, d, batch))
            except Exception as exc:
                _failed(ctx, d.pk, exc, now, summary)
    try:
        ctx.store.record_outcomes(records, now)
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
                summary.count(rec.state)
                done.append(rec.pk)
        return done
    for rec in records:
        summary.count(rec.state)
    return [rec.pk for rec in records]


def recover(ctx: Context, now: datetime, summary: PassSummary, committed: Callable[[], None] | None = None) -> None:
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
        if process_batch(ctx, items, now, summary) and committed is not None:
            committed()


def _fault(point: str) -> None:
    """Test hook: INTAKE_FAULT=<point> kills the process there (crash tests)."""
    if os.environ.get(FAULT_ENV) == point:
        os._exit(70)


def fetch_new(ctx: Context, mailbox: MailboxLike, clock: Callable[[], datetime], summary: PassSummary,
              progress: Callable[[int, int], None] | None = None,
              committed: Callable[[], None] | None = None) -> None:
    """Fetch new mail in batches. Per batch: archive every message (fsync'd), record them all and move the
    UID high-water mark in one transaction, then process them and write their outcomes and receipts in one
    transaction. A crash anywhere leaves each message either unrecorded (fetched again: the mark did not
    move) or recorded as 'received' (finished by ``recover`` on the next pass); never recorded twice.

    With several batches, a staging thread fetches, archives and records the next batch while this one
    is processed (``_Stager``): the same steps in the same order for each batch, overlapped."""
    cfg = ctx.cfg
    folder = cfg.mailbox.folder
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
    uids = mailbox.uids_above(last_uid)
    size = max(1, cfg.mailbox.batch_size)
    batches = [uids[start:start + size] for start in range(0, len(uids), size)]
    total, handled = len(uids), 0

    pipelined = len(batches) >= 2 and _threads_share_database(ctx)

    def stage(batch: list[int]) -> tuple[list[tuple[int, Fetched]], list[parsepool.Ticket] | None]:
        """Fetch, archive (durable) and record one batch, moving the mark; the new messages in it (and, in a
        backlog, their tickets: the parse process starts on them as soon as they are fetched, while they are
        archived and earlier batches are processed; nothing is recorded from a parse before its archive)."""
        now = clock()
        fetched = list(mailbox.fetch(batch))
        summary.fetched += len(fetched)
        raws = [f.raw for f in fetched]
        early = None
        if pipelined and len(fetched) >= PARSE_PROCESS_MIN:
            early = parsepool.pool().submit(raws, cfg.mailbox.trusted_authserv_ids)
        # durable before anything is recorded (in a backlog, written by the archive's writer process)
        stored = archive.writer().put_many(ctx.archive, raws) if pipelined else ctx.archive.put_many(raws)
        results = ctx.store.record_raw_batch(
            [RawRecord(message_id=header_message_id(f.raw), sha256=digest, gm_msgid=f.gm_msgid, uid=f.uid,
                       size=len(f.raw), received_at=f.internaldate) for f, (digest, _path) in zip(fetched, stored)],
            folder=folder, uidvalidity=uidvalidity, last_uid=max(batch), now=now)
        fresh: list[tuple[int, Fetched]] = []
        tickets: list[parsepool.Ticket] = []
        for i, (f, (pk, created)) in enumerate(zip(fetched, results)):
            if created:
                summary.new += 1
                fresh.append((pk, f))
                if early is not None:
                    tickets.append(early[i])
            else:
                summary.duplicates += 1
                if early is not None:
                    early[i].discard()  # recorded before: never processed, its parse is not wanted
        if fresh:
            _fault("exit-after-archive")
        return fresh, (tickets if early is not None else None)

    def finish(batch: list[int], staged: tuple[list[tuple[int, Fetched]], list[parsepool.Ticket] | None],
               mark: Callable[[list[int]], None]) -> None:
        nonlocal handled
        fresh, tickets = staged
        ok = set(process_batch(ctx, [(pk, f.raw, f.internaldate) for pk, f in fresh], clock(), summary, tickets))
        if fresh:
            _fault("exit-after-outcomes")
        if ok and committed is not None:
            committed()  # their receipts can go out while the next batch is read
        mark([f.uid for pk, f in fresh if pk in ok])
        if progress is not None:
            for _uid in batch:
                handled += 1
                _report(progress, handled, total)

    if not pipelined:
        for batch in batches:
            finish(batch, stage(batch), mailbox.mark_processed)
        return
    stager = _Stager(batches, stage, mailbox.mark_processed,
                     weigh=lambda staged: sum(len(f.raw) for _pk, f in staged[0]))
    try:
        for batch, staged in stager:
            finish(batch, staged, stager.mark)
    except BaseException:
        stager.close(quiet=True)  # the error that stopped the pass is the one to report
        raise
    stager.close()


class _Stager:
    """Runs ``stage`` over the batches in a thread, one batch ahead of the caller, and hands each result
    over in order. The mailbox connection belongs to this thread while it runs: what the caller wants
    marked on the server (``mark``) is done here between fetches, and after the thread ends by ``close``.
    An error in the thread reaches the caller where that batch would have come; nothing later is staged.
    Memory is bounded: the thread fetches no further batch while the batches staged and not yet finished
    by the caller hold ``STAGED_BYTES`` of mail or more (big attachments in a backlog).
    """

    _END = object()
    STAGED_BYTES = 200 * 2**20

    def __init__(self, batches: list[list[int]], stage: Callable[[list[int]], Any],
                 mark_processed: Callable[[list[int]], None], weigh: Callable[[Any], int]) -> None:
        self._batches, self._stage, self._mark_processed, self._weigh = batches, stage, mark_processed, weigh
        self._held = 0  # bytes staged and not yet finished by the caller
        self._room = threading.Condition()
        self._ready: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._marks: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="intake-stage", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for batch in self._batches:
                with self._room:
                    while self._held >= self.STAGED_BYTES and not self._stop.is_set():
                        self._room.wait(0.2)
                self._flush_marks()
                if self._stop.is_set():
                    return
                staged = self._stage(batch)
                with self._room:
                    self._held += self._weigh(staged)
                if not self._put((batch, staged)):
                    return
            self._put(self._END)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
            self._put(exc)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._ready.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _flush_marks(self) -> None:
        while True:
            try:
                uids = self._marks.get_nowait()
            except queue.Empty:
                return
            self._mark_processed(uids)

    def mark(self, uids: list[int]) -> None:
        if uids:
            self._marks.put(uids)

    def __iter__(self) -> Any:
        while True:
            item = self._ready.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            with self._room:  # the caller is back: that batch is finished
                self._held -= self._weigh(item[1])
                self._room.notify_all()

    def close(self, quiet: bool = False) -> None:
        """Stop staging, wait for the thread, then do the marks still waiting (the connection is free again).
        ``quiet``: a failure of those marks is logged instead of raised (another error is on its way)."""
        self._stop.set()
        self._thread.join()
        try:
            self._flush_marks()
        except Exception:  # noqa: BLE001
            if not quiet:
                raise
            log.warning("processed mail not marked on the server after an error", exc_info=True)


def _report(progress: Callable[[int, int], None], done: int, total: int) -> None:
    try:
        progress(done, total)
    except Exception:  # a progress display must never cost a pass
        log.exception("progress callback failed")


class _OutboxSender:
    """Sends the outbox from a second thread while the pass reads the next batch.

    Each batch's receipts are committed with its outcomes; sending them (SMTP round trips, a claim
    and a finish transaction per group of items) is mostly waiting, which this overlaps with reading the next
    batch. It is the same ``flush_outbox`` as at the end of the pass: limits, claims ('sending'
    before the SMTP conversation, a group per transaction) and retries are unchanged, and the pass's final flush sends whatever
    is left. A failure here is only logged: the final flush meets it again and reports it.
    """

    COUNTED = ("sent", "retry", "failed")

    def __init__(self, ctx: Context, clock: Callable[[], datetime], kwargs: dict[str, Any]) -> None:
        self.ctx, self.clock, self.kwargs = ctx, clock, kwargs
        self.counts = dict.fromkeys(self.COUNTED, 0)
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="intake-outbox", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                got = flush_outbox(self.ctx.store, self.ctx.cfg.smtp, self.clock(), **self.kwargs)
            except Exception as exc:  # noqa: BLE001 - the final flush of the pass meets it again
                log.warning("outbox not flushed during the pass (tried again at its end): %s", exc)
                return
            for key in self.COUNTED:
                self.counts[key] += got.get(key, 0)

    def stop(self) -> dict[str, int]:
        self._stopping = True
        self._wake.set()
        self._thread.join()
        return self.counts


def run_pass(ctx: Context, *, mailbox_factory: Callable[[], ContextManager[MailboxLike]] | None = None,
             clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
             transport_factory: Any = None, progress: Callable[[int, int], None] | None = None) -> PassSummary:
    """One intake pass. A mailbox failure is recorded in the summary; the outbox is flushed regardless.

    ``progress(done, total)``, when given, is called after each new message of the fetch is handled
    (``total``: the new UIDs found; a batch's messages are reported when its outcomes are committed).
    Receipts start going out while later batches are read (``_OutboxSender``); ``summary.outbox``
    counts everything the pass sent, retried or failed, and what is still waiting at its end.
    """
    summary = PassSummary()
    now = clock()
    ctx.store.recover_interrupted_sends(now)
    kwargs = {"transport_factory": transport_factory} if transport_factory else {}
    sender = _OutboxSender(ctx, clock, kwargs) if _threads_share_database(ctx) else None
    poke = sender.poke if sender is not None else None
    try:
        recover(ctx, now, summary, poke)
        factory = mailbox_factory or (lambda: Mailbox(ctx.cfg.mailbox))
        try:
            with factory() as mailbox:
                fetch_new(ctx, mailbox, clock, summary, progress, poke)
        except TemporaryError as exc:
            summary.error = str(exc)
            log.error("pass could not complete: %s", exc)
    finally:
        early = sender.stop() if sender is not None else {}
    try:
        final = flush_outbox(ctx.store, ctx.cfg.smtp, clock(), **kwargs)
    except TemporaryError as exc:
        log.error("outbox not flushed: %s", exc)
        final = {"error": 1}
    summary.outbox = {**final, **{k: n + final.get(k, 0) for k, n in early.items() if n or k in final}}
    return summary


def _threads_share_database(ctx: Context) -> bool:
    """An in-memory SQLite database is one per connection: there a second thread would see another one."""
    url = ctx.store.url
    return not (url.startswith("sqlite") and (":memory:" in url or url.rstrip("/") in ("sqlite:", "sqlite://")))


def reprocess(ctx: Context, pk: int, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> str:
    """Replay a recorded message from its archived copy (after a fix); a new receipt reflects the new outcome."""
    row = ctx.store.message(pk)
    if row is None:
        raise KeyError(pk)
    raw = ctx.archive.get(row.sha256)
    now = clock()
    ctx.store.reset_for_reprocess(pk, now)
    summary = PassSummary()
    _process_safely(ctx, pk, raw, from_iso(row.received_at), now, summary)
    flush_outbox(ctx.store, ctx.cfg.smtp, clock())
    after = ctx.store.message(pk)
    return after.state if after is not None else "unknown"
