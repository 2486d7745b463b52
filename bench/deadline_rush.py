"""Issue 15's figures: a simulated deadline fortnight for a district of 300 units, at the default sending limits.

The real pipeline (run_pass, run_reminders, the worker's every-minute outbox job, the weekly digest and the
day-after report, the SQLite ledger, the isolated form reader) runs on a simulated clock; only the network is
fake: an in-memory mailbox (pipeline/worker/mailpass.py's MailboxLike) and an SMTP transport that records
what leaves and when (pipeline/outbox/smtp.py's Transport). Units write in the pattern of a real deadline
(registration due 22/02/2022: few early, most in the last three days, in office hours); some send a form
with an error, are told so, and send it again within hours; a few send twice.

Nothing is asserted: the figures are printed beside their goals (receipts wait under 10 minutes on every day;
no stale reminder is sent). ``--help`` lists the sizes.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rush_world import (DUE, LAST_DAY, TZ, Arrival, Clock, Sent, SimMailbox, SimTransport, Unit,  # noqa: E402
                        arrivals, district, write_config)
from pipeline.config import load_config  # noqa: E402
from pipeline.context import Context  # noqa: E402
from pipeline.ledger.schema import from_iso  # noqa: E402
from pipeline.plan.reminders import run_reminders  # noqa: E402
from pipeline.plan.sending import send_due  # noqa: E402
from pipeline.plan.staffreport import run_report  # noqa: E402
from pipeline.worker.mailpass import run_pass  # noqa: E402

OFFICE = (7 * 60, 19 * 60)  # local minutes in which the outbox job runs every minute (else every 5 minutes)
RECEIPT_GOAL_MIN = 10


def say(text: str = "") -> None:
    print(text, flush=True)


# ------------------------------------------------------------------------------------------ the fortnight
@dataclass
class Run:
    name: str
    ctx: Context
    days: list[date]
    arrivals: list[Arrival]
    sent: list[Sent]
    wall: float = 0.0
    crashes: list[str] = field(default_factory=list)
    # wall seconds the real code took, by (local day, job): in the worker one job runs at a time (jobs.py), so
    # while the 08:00 reminders job runs, the IDLE pass of a mail that arrives waits for it
    job_wall: dict[tuple[date, str], float] = field(default_factory=lambda: defaultdict(float))
    pass_wall_max: dict[date, float] = field(default_factory=lambda: defaultdict(float))


def simulate(name: str, workdir: Path, units: Sequence[Unit], days: list[date], mails: list[Arrival],
             smtp_limits: dict[str, int]) -> Run:
    ctx = Context(load_config(write_config(workdir, units, smtp_limits)))
    clock = Clock(datetime.combine(days[0], datetime.min.time(), TZ))
    sent: list[Sent] = []
    transport = lambda _cfg: SimTransport(clock, sent)  # noqa: E731
    box = SimMailbox(sent)
    run = Run(name, ctx, days, mails, sent)
    started = time.monotonic()
    queue = list(mails)
    pos = 0

    def guarded(what: str, fn: Any) -> None:
        began = time.monotonic()
        try:
            fn()
        except Exception as exc:  # a crash is a figure: report it and go on with the fortnight
            run.crashes.append(f"{clock.now:%d/%m %H:%M} {what}: {exc.__class__.__name__}: {exc}")
        took = time.monotonic() - began
        day = clock.now.astimezone(TZ).date()
        job = what.split(" ")[0]
        run.job_wall[(day, job)] += took
        if job == "pass":
            run.pass_wall_max[day] = max(run.pass_wall_max[day], took)

    for day in days:
        midnight = datetime.combine(day, datetime.min.time(), TZ)
        for minute in range(24 * 60):
            tick = midnight + timedelta(minutes=minute)
            while pos < len(queue) and queue[pos].at <= tick:  # IDLE: a pass as each mail arrives
                a = queue[pos]
                pos += 1
                clock.now = a.at
                box.deliver(a.raw, a.at)
                guarded(f"pass ({a.unit_id} {a.what})",
                        lambda: run_pass(ctx, mailbox_factory=lambda: box, clock=clock, transport_factory=transport))
            clock.now = tick
            if minute == ctx.cfg.reminder_hour * 60:
                guarded("remind", lambda: run_reminders(ctx, today=day, clock=clock, transport_factory=transport))
            if minute == ctx.cfg.reminder_hour * 60 + 30:
                if day.strftime("%a").lower() == ctx.cfg.digest_weekday:
                    y, w, _ = day.isocalendar()
                    guarded("digest", lambda: run_report(ctx, today=day, send=True, key=f"report:weekly:{y}-W{w:02d}",
                                                         clock=clock, transport_factory=transport,
                                                         out_dir=workdir / "reports"))
                if day == DUE + timedelta(days=1):
                    guarded("report-after", lambda: run_report(
                        ctx, today=day, send=True, key=f"report:deadline:{ctx.year}:registration", clock=clock,
                        transport_factory=transport, out_dir=workdir / "reports"))
            if OFFICE[0] <= minute < OFFICE[1] or minute % 5 == 0:
                guarded("outbox job", lambda: _flush_with(ctx, clock, transport))
        print(f"  [{name}] {day:%d/%m} simulated, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    run.wall = time.monotonic() - started
    return run


def _flush_with(ctx: Context, clock: Clock, transport: Any) -> None:
    """The worker's outbox job as jobs._flush_waiting runs it (nothing unless something is due, then
    send_due), with the fake transport."""
    if ctx.store.due_outbox(clock(), limit=1):
        send_due(ctx, clock(), transport_factory=transport)


# ------------------------------------------------------------------------------------------ the figures
def minutes(delta: timedelta) -> float:
    return delta.total_seconds() / 60


def fmt_min(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def rolling_max(times: list[datetime], window: timedelta) -> int:
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def report(run: Run) -> None:
    ctx, smtp = run.ctx, run.ctx.cfg.smtp
    store = ctx.store
    rows = store.outbox_rows()
    by_mid = {r.smtp_message_id: r for r in rows}
    local = lambda t: t.astimezone(TZ).date()  # noqa: E731
    say(f"\n== {run.name}: {len(ctx.units.units)} units, {run.days[0]:%d/%m}–{run.days[-1]:%d/%m/%Y}; "
        f"smtp.per_minute {smtp.per_minute}, per_day {smtp.per_day} (rolling 24 h), reserve for receipts "
        f"{smtp.receipt_reserve}; receipt-delay alert after {ctx.cfg.receipt_delay_alert_minutes} min ==")
    kinds = defaultdict(int)
    for a in run.arrivals:
        kinds[a.what] += 1
    say(f"units' mails: {len(run.arrivals)} from {len({a.unit_id for a in run.arrivals})} units "
        f"(first registration {kinds['good'] + kinds['bad']}, of which with an error {kinds['bad']}; "
        f"corrections {kinds['fixed']}; sent twice {kinds['again']})")
    say(f"outbox job every minute {OFFICE[0] // 60:02d}:00–{OFFICE[1] // 60:02d}:00 local, every 5 minutes "
        "at night (to save time); a pass at each mail's arrival (IDLE); reminders at "
        f"{ctx.cfg.reminder_hour:02d}:00; wall time {run.wall:.0f} s")

    day_in = defaultdict(int)
    for a in run.arrivals:
        day_in[local(a.at)] += 1
    sent_by_day: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    unknown = 0
    for s in run.sent:
        row = by_mid.get(s.message_id)
        sent_by_day[local(s.at)][row.purpose if row is not None else "?"] += 1
        unknown += row is None
    waits: dict[tuple[date, str], float] = {}
    queued = defaultdict(int)
    dropped = defaultdict(int)
    carried = defaultdict(int)
    for r in rows:
        created = from_iso(r.created_at)
        if r.purpose == "reminder":
            queued[local(created)] += 1
        if r.state == "dropped":
            dropped[local(from_iso(r.next_attempt_at))] += 1
        if r.state == "sent":
            sent_at = from_iso(r.sent_at)
            key = (local(sent_at), "receipt" if r.purpose in ("receipt", "notice") else r.purpose)
            waits[key] = max(waits.get(key, 0.0), minutes(sent_at - created))
            if r.purpose == "reminder" and local(sent_at) != local(created):
                carried[local(sent_at)] += 1
    say("")
    say("day         in  sent/budget  receipts  reminders: queued sent dropped later-day  other  "
        "longest wait (min): receipt reminder   wall s: remind pass-max")
    for d in run.days:
        got = sent_by_day[d]
        total = sum(got.values())
        other = total - got["receipt"] - got["notice"] - got["reminder"]
        say(f"{d:%a %d/%m}  {day_in[d]:3d}  {total:4d}/{smtp.per_day:<5d}  {got['receipt'] + got['notice']:8d}  "
            f"{queued[d]:17d} {got['reminder']:4d} {dropped[d]:7d} {carried[d]:9d}  {other:5d}  "
            f"{fmt_min(waits.get((d, 'receipt'))):>26s} {fmt_min(waits.get((d, 'reminder'))):>8s}   "
            f"{run.job_wall.get((d, 'remind'), 0.0):13.1f} {run.pass_wall_max.get(d, 0.0):8.2f}")
    pending = [r for r in rows if r.state == "pending"]
    end = datetime.combine(run.days[-1] + timedelta(days=1), datetime.min.time(), TZ)
    say(f"still waiting at the end: {len(pending)} "
        + ", ".join(f"{p}: {sum(1 for r in pending if r.purpose == p)}" for p in sorted({r.purpose for r in pending}))
        + (f" (oldest receipt queued {max(minutes(end - from_iso(r.created_at)) for r in pending if r.purpose == 'receipt'):.0f} min before the end)"
           if any(r.purpose == "receipt" for r in pending) else ""))
    states = defaultdict(int)
    for r in rows:
        states[(r.purpose, r.state)] += 1
    say("outbox rows by purpose/state: " + ", ".join(f"{p}/{s} {n}" for (p, s), n in sorted(states.items())))
    if unknown:
        say(f"mails sent that match no outbox row by Message-ID: {unknown}")
    times = sorted(s.at for s in run.sent)
    say(f"limits kept? most sent in any rolling minute {rolling_max(times, timedelta(minutes=1))} "
        f"(per_minute {smtp.per_minute}); in any rolling 24 h {rolling_max(times, timedelta(days=1))} "
        f"(per_day {smtp.per_day}); transport saw {len(run.sent)}, ledger 'sent' {states_sum(states, 'sent')}")

    stale, checked = stale_reminders(ctx, rows)
    receipt_days = [(d, waits[(d, "receipt")]) for d in run.days if (d, "receipt") in waits]
    worst = max(receipt_days, key=lambda x: x[1]) if receipt_days else None
    say("")
    say(f"stale reminders SENT: {len(stale)} of {checked} reminders sent   goal 0 → "
        f"{'MET' if not stale else 'NOT MET'}")
    for line in stale[:10]:
        say(f"    {line}")
    late_days = [f"{d:%d/%m} {w:.0f} min" for d, w in receipt_days if w >= RECEIPT_GOAL_MIN]
    waiting_receipts = [r for r in pending if r.purpose in ("receipt", "notice")]
    met = not late_days and not waiting_receipts
    say(f"longest receipt wait on every day: {'; '.join(f'{d:%d/%m} {fmt_min(w)}' for d, w in receipt_days)} "
        f"(worst {worst[1]:.1f} min on {worst[0]:%d/%m})" if worst else "no receipts sent")
    say(f"  goal under {RECEIPT_GOAL_MIN} min every day → {'MET' if met else 'NOT MET'}"
        + (f": {', '.join(late_days)}" if late_days else "")
        + (f"; {len(waiting_receipts)} receipts never sent" if waiting_receipts else ""))
    alerts = [r for r in rows if r.purpose == "alert"]
    say(f"staff alerts queued: {len(alerts)}" + "".join(f"\n    {from_iso(r.created_at).astimezone(TZ):%d/%m %H:%M} "
                                                          f"{r.subject} ({r.state})" for r in alerts))
    if run.crashes:
        say(f"CRASHES: {len(run.crashes)}")
        for c in run.crashes[:10]:
            say(f"    {c}")


def states_sum(states: dict[tuple[str, str], int], state: str) -> int:
    return sum(n for (_p, s), n in states.items() if s == state)


def stale_reminders(ctx: Context, rows: Sequence[Any]) -> tuple[list[str], int]:
    """Reminders that left to a unit that, when they left, had an accepted document recorded meeting an
    obligation they name: judged from the ledger alone (reminder rows, documents), not by the recheck."""
    obligations = {o.id: o for o in ctx.obligations}
    docs = defaultdict(list)
    for d in ctx.store.document_records(ctx.year):
        docs[d.unit_id].append(d)
    stale: list[str] = []
    checked = 0
    for r in rows:
        if r.purpose != "reminder" or r.state != "sent":
            continue
        checked += 1
        sent_at = from_iso(r.sent_at)
        for part in ctx.store.reminder_parts(r.id):
            ob = obligations[part.obligation_id]
            met = [d for d in docs[part.unit_id] if d.kind in ob.kinds and d.period == ob.period
                   and d.state == "accepted" and d.received_at <= sent_at]
            if met:
                stale.append(f"outbox {r.id} to {part.unit_id} ({part.obligation_id}/{part.stage}) sent "
                             f"{sent_at.astimezone(TZ):%d/%m %H:%M}; accepted document recorded "
                             f"{met[0].received_at.astimezone(TZ):%d/%m %H:%M}")
    return stale, checked


# ------------------------------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, default=300, help="units in the district (default 300)")
    p.add_argument("--days", type=int, default=15,
                   help="days simulated, ending on 23/02/2022 (default 15: 09/02–23/02)")
    p.add_argument("--tight-per-day", type=int, default=250, help="per_day of the second scenario (default 250)")
    p.add_argument("--only", choices=("default", "tight"), help="run one scenario")
    p.add_argument("--seed", type=int, default=15)
    args = p.parse_args(argv)
    os.environ.setdefault("INTAKE_BENCH_IMAP_PW", "unused")
    os.environ.setdefault("INTAKE_BENCH_SMTP_PW", "unused")
    days = [LAST_DAY - timedelta(days=i) for i in range(args.days - 1, -1, -1)]
    units = district(args.units)
    t0 = time.monotonic()
    mails = arrivals(units, days, random.Random(args.seed))
    say(f"deadline fortnight: registration due {DUE:%d/%m/%Y}; {len(mails)} units' mails built in "
        f"{time.monotonic() - t0:.0f} s (the same mails in every scenario)")
    scenarios = [("default (Gmail, @gmail.com sender)", {}), (f"tight (per_day {args.tight_per_day})",
                                                               {"per_day": args.tight_per_day})]
    if args.only:
        scenarios = [scenarios[0 if args.only == "default" else 1]]
    for name, limits in scenarios:
        with tempfile.TemporaryDirectory(prefix="rush-") as tmp:
            run = simulate(name, Path(tmp), units, days, mails, limits)
            report(run)
            run.ctx.store.engine.dispose()


if __name__ == "__main__":
    main()
