"""Before → after: what a staff action would change in a unit's record, worked out before it is done.

An action that would replace the document that counts for a unit (assigning a stranger's mail to a unit
whose accepted document the mail's newer one would supersede; accepting a document that supersedes an
accepted one), turn a unit that was on time into late, or add an address to a unit is done only once staff
have seen that change and confirmed it (pipeline.desk.actions raises ``NeedsConfirmation`` otherwise).

The plan is worked out from the ledger as it is now, by the rules the pass itself follows: the mail is read
as the unit's without writing anything (worker.mailpass.prepare_message), and deadlines.unit_states says
which document counts before and after. Its ``token`` is a fingerprint of what was shown: a confirmation
carries it back, and one whose token no longer matches (the unit's record or the mail changed in between)
is refused and the new change shown instead.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

import sqlalchemy as sa

from pipeline.ledger.schema import documents, from_iso
from pipeline.model import DocumentRecord
from pipeline.plan import deadlines

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.context import Context
    from pipeline.model import Unit

log = logging.getLogger(__name__)

COUNTING = ("on_time", "late")
_STATE_WORDS = {"missing": "chưa nộp", "rejected": "chưa đạt, chờ gửi lại", "on_time": "đúng hạn",
                "late": "quá hạn"}


@dataclass(frozen=True)
class Counted:
    """Where a unit stands on one obligation: its state and the document that counts (None: none)."""

    state: str  # missing | rejected | on_time | late
    document_id: int | None = None  # below 0: a document of the mail being assigned, not recorded yet
    filename: str | None = None
    received_at: datetime | None = None

    @property
    def state_words(self) -> str:
        return _STATE_WORDS.get(self.state, self.state)

    def text(self, tz: Any) -> str:
        if self.document_id is None or self.state not in COUNTING:
            return self.state_words
        when = f" nhận lúc {self.received_at.astimezone(tz):%H:%M ngày %d/%m/%Y}" if self.received_at else ""
        return f"tệp “{self.filename}”{when} ({self.state_words})"


@dataclass(frozen=True)
class Shift:
    """One obligation of the unit whose state or counting document the action changes."""

    obligation_id: str
    title: str
    year: int
    before: Counted
    after: Counted

    @property
    def replaces(self) -> bool:
        """An accepted document stops counting."""
        return self.before.state in COUNTING and self.before.document_id != self.after.document_id

    @property
    def becomes_late(self) -> bool:
        return self.before.state == "on_time" and self.after.state == "late"


@dataclass(frozen=True)
class Plan:
    action: str  # assign | accept
    target_id: int  # the message (assign) or the document (accept)
    unit_id: str
    unit_name: str
    shifts: tuple[Shift, ...]
    address: str | None = None  # to be added to the unit
    seen: tuple[Any, ...] = ()  # the target as it was seen (state, generation), for the token

    @property
    def needs_confirmation(self) -> bool:
        return self.address is not None or any(s.replaces or s.becomes_late for s in self.shifts)

    @property
    def token(self) -> str:
        """A fingerprint of the change shown: any change of the unit's record or of the target alters it."""
        shown = [self.action, self.target_id, self.unit_id, self.address, list(self.seen),
                 [[s.obligation_id, s.year, s.before.state, s.before.document_id, s.after.state, s.after.document_id]
                  for s in self.shifts]]
        return hashlib.sha256(json.dumps(shown, default=str).encode()).hexdigest()[:32]

    def lines(self, tz: Any) -> list[str]:
        """The change in sentences (the CLI prints them; the desk shows the same as a table)."""
        out = []
        for s in self.shifts:
            text = f"{s.title}: {s.before.text(tz)} → {s.after.text(tz)}"
            if s.replaces:
                text += "; tệp đang được tính sẽ không còn được tính"
            if s.becomes_late:
                text += "; đơn vị chuyển từ ĐÚNG HẠN sang QUÁ HẠN"
            out.append(text + ".")
        if self.address:
            out.append(f"Địa chỉ {self.address} sẽ được thêm vào đơn vị {self.unit_name}: thư sau từ địa chỉ này "
                       "được nhận thẳng cho đơn vị.")
        return out


# ------------------------------------------------------------------------------------------ working it out

def plan_assign(ctx: Context, row: Any, unit: Unit, *, add_address: bool) -> Plan:
    """What assigning message ``row`` to ``unit`` would change: its documents read as the unit's."""
    from pipeline.worker.mailpass import prepare_message

    received = from_iso(row.received_at)
    stand_in = _Row({**row._mapping, "assigned_unit_id": unit.unit_id})
    new: list[DocumentRecord] = []
    names: dict[int, str] = {}
    try:
        rec = prepare_message(ctx, row.id, ctx.archive.get(row.sha256), received, stand_in)
    except Exception as exc:  # noqa: BLE001 - unreadable: processing will say so; nothing would be counted
        log.warning("desk: could not foresee assigning message %s: %s", row.id, exc)
        rec = None
    if rec is not None and rec.state == "processed":
        for i, o in enumerate(rec.outcomes, start=1):
            new.append(DocumentRecord(document_id=-i, unit_id=unit.unit_id, kind=o.reading.kind,
                                      period=o.reading.period, state=o.reading.state, received_at=received,
                                      campaign=o.reading.campaign if o.reading.campaign is not None else rec.campaign))
            names[-i] = o.filename
    with ctx.store.tx() as c:  # an earlier outcome of this mail (an 'error' one) is forgotten when it is redone
        own = set(c.execute(sa.select(documents.c.id).where(documents.c.message_pk == row.id)).scalars())
    years = sorted({d.campaign for d in new if d.state == "accepted" and d.campaign is not None})
    shifts = _shifts(ctx, unit, years, drop=own, add=new, names=names)
    sender = (row.sender or "").strip()
    address = sender if add_address and sender and sender.lower() not in {e.lower() for e in unit.emails} else None
    return Plan("assign", row.id, unit.unit_id, unit.name, shifts, address, (row.state, row.generation))


def plan_accept(ctx: Context, d: Any, unit: Unit | None, *, kind: str, period: str | None) -> Plan:
    """What accepting needs_review document ``d`` as ``kind``/``period`` would change for its unit."""
    if unit is None:
        return Plan("accept", d.id, d.unit_id or "", "", (), None, (d.state,))
    campaign = int(period[:4]) if period else d.campaign  # as the ledger records it
    accepted = DocumentRecord(document_id=d.id, unit_id=unit.unit_id, kind=kind, period=period, state="accepted",
                              received_at=from_iso(d.received_at), campaign=campaign)
    years = [campaign] if campaign is not None else []
    shifts = _shifts(ctx, unit, years, drop={d.id}, add=[accepted], names={d.id: d.filename})
    return Plan("accept", d.id, unit.unit_id, unit.name, shifts, None, (d.state, kind, period))


class _Row(dict):  # type: ignore[type-arg]
    """A message row with the desk's decision on it, as prepare_message reads one (attribute access)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _shifts(ctx: Context, unit: Unit, years: Iterable[int], *, drop: set[int], add: list[DocumentRecord],
            names: dict[int, str]) -> tuple[Shift, ...]:
    """The unit's obligations of ``years`` whose state or counting document differ once the documents ``drop``
    are gone and ``add`` recorded."""
    out: list[Shift] = []
    for year in years:
        plan = ctx.campaigns.get(year)
        if plan is None:
            continue
        own = [d for d in ctx.store.document_records(campaign=year) if d.unit_id == unit.unit_id]
        after = [d for d in own if d.document_id not in drop] + [_first_attempt(d, own) for d in add
                                                                 if d.campaign == year]
        keep = ctx.cfg.keep_first_attempt_date
        st_before = deadlines.unit_states(plan.obligations, [unit], own, keep_first_attempt_date=keep)
        st_after = deadlines.unit_states(plan.obligations, [unit], after, keep_first_attempt_date=keep)
        for ob in plan.obligations:
            b, a = st_before.get((unit.unit_id, ob.id)), st_after.get((unit.unit_id, ob.id))
            if b is None or a is None or (b.state, b.document_id) == (a.state, a.document_id):
                continue
            out.append(Shift(ob.id, ob.title, year, _counted(b), _counted(a)))
    ids = [i for s in out for i in (s.before.document_id, s.after.document_id) if i is not None and i not in names]
    if ids:
        with ctx.store.tx() as c:
            names.update({r.id: r.filename for r in c.execute(
                sa.select(documents.c.id, documents.c.filename).where(documents.c.id.in_(ids)))})
    return tuple(Shift(s.obligation_id, s.title, s.year, _named(s.before, names), _named(s.after, names))
                 for s in out)


def _first_attempt(d: DocumentRecord, own: list[DocumentRecord]) -> DocumentRecord:
    """``d`` with its first attempt's time as the ledger would give it (store.document_records)."""
    times = [o.received_at for o in own if (o.kind, o.period) == (d.kind, d.period)] + [d.received_at]
    return replace(d, first_attempt_at=min(times))


def _counted(s: deadlines.ObligationState) -> Counted:
    return Counted(s.state, s.document_id, None, s.received_at)


def _named(c: Counted, names: dict[int, str]) -> Counted:
    return Counted(c.state, c.document_id, names.get(c.document_id) if c.document_id is not None else None,
                   c.received_at)
