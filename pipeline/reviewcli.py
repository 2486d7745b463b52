"""`intake review …`: the review queue from the command line, as the desk's Cần xử lý does it (list, history,
assign, release, accept, reject, ignore, undo).

An assign or accept that would change a unit's record (a counting document replaced, on time made late, an
address added) prints the change and does nothing unless ``--yes`` is given (pipeline.desk.confirm).
Apart from cli.py to keep that file to its job; building the parser imports neither the desk nor the ledger.
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.desk.confirm import Plan


def add_review_parser(sub: Any) -> None:
    """Register `intake review …` on the CLI's subcommands."""
    rv = sub.add_parser("review", help="what needs a person: list it, act on it, undo (same as the desk's Cần xử lý)")
    rvs = rv.add_subparsers(dest="review_action", required=True)
    rvs.add_parser("list", help="the review queue, oldest first")
    h = rvs.add_parser("history", help="recorded actions, newest first")
    h.add_argument("--unit", help="only actions about this unit_id")
    h.add_argument("--limit", type=int, default=50)
    a = rvs.add_parser("assign", help="process a quarantined mail as if this unit had sent it (receipt included)")
    a.add_argument("message", type=int, help="message id (as in `intake review list`)")
    a.add_argument("unit", help="unit_id")
    a.add_argument("--add-address", action="store_true", help="also add the sender's address to the unit")
    rl = rvs.add_parser("release", help="let a mail that failed the authentication check through")
    rl.add_argument("message", type=int)
    ac = rvs.add_parser("accept", help="count a needs_review document as a given kind and period")
    ac.add_argument("document", type=int)
    ac.add_argument("--kind", required=True, help="a form id of the document's campaign (rules/campaigns/<year>.yaml "
                                                  "forms), e.g. registration, summary, commendation, report")
    ac.add_argument("--period", help="for a report: YYYY-Q1 | YYYY-H1 | YYYY-Q3 | YYYY-Y")
    rj = rvs.add_parser("reject", help="refuse a needs_review document; the reason is mailed to the unit")
    rj.add_argument("document", type=int)
    rj.add_argument("--reason", required=True)
    ig = rvs.add_parser("ignore", help="take an item off the queue")
    ig.add_argument("target", choices=["message", "document", "bounce"])
    ig.add_argument("id", type=int)
    ig.add_argument("--reason")
    ud = rvs.add_parser("undo", help="put back what an action changed")
    ud.add_argument("action_id", type=int)
    for q in (a, rl, ac, rj, ig, ud):
        q.add_argument("--actor", help="who is acting (default: cli:<login name>)")
    for q in (a, ac):
        q.add_argument("--yes", action="store_true",
                       help="confirm a change of a unit's record (a counting document replaced, on time made late, an "
                            "address added): without it such a change is printed and nothing is done (exit 1)")
    rv.set_defaults(func=cmd_review)


def cmd_review(args: argparse.Namespace) -> int:
    from pipeline.cli import _actor, _context
    from pipeline.desk import actionlog, actions
    from pipeline.desk.queue import queue

    ctx = _context(args)
    act = args.review_action
    try:
        if act == "list":
            items = queue(ctx)
            if not items:
                print("Không có việc nào cần xử lý.")
            for i in items:
                what = {"message": "thư", "document": "tệp", "bounce": "báo lỗi"}[i.target]
                when = _when_local(i.received_at, ctx.cfg.tz)
                head = f"[{i.kind}] {what} #{i.target_id} (thư #{i.message_pk}) {when}"
                print(head + f" từ {i.sender or '?'}" + (f" — {i.filename}" if i.filename else "")
                      + (f" — “{i.subject}”" if i.subject else ""))
                print(f"    lý do: {i.reason}")
                print(f"    thao tác: {', '.join(i.actions)}")
            return 0
        if act == "history":
            for a in actionlog.history(ctx, unit_id=args.unit, limit=args.limit):
                undone = f" [đã hoàn tác bởi {a.undone_by}]" if a.undone_at else ""
                print(f"#{a.id} {_when_local(a.created_at, ctx.cfg.tz)} {a.actor}: {a.summary}{undone}")
            return 0
        actor = _actor(args)
        if act == "assign":
            plan = actions.plan_assign(ctx, args.message, args.unit, add_address=args.add_address)
            if not _confirmed(plan, args.yes, ctx.cfg.tz):
                return 1
            res = actions.assign(ctx, args.message, args.unit, actor=actor, add_address=args.add_address,
                                 confirm=plan.token)
        elif act == "release":
            res = actions.release(ctx, args.message, actor=actor)
        elif act == "accept":
            plan = actions.plan_accept(ctx, args.document, kind=args.kind, period=args.period)
            if not _confirmed(plan, args.yes, ctx.cfg.tz):
                return 1
            res = actions.accept(ctx, args.document, kind=args.kind, period=args.period, actor=actor,
                                 confirm=plan.token)
        elif act == "reject":
            res = actions.reject(ctx, args.document, reason=args.reason, actor=actor)
        elif act == "ignore":
            res = actions.ignore(ctx, args.target, args.id, actor=actor, reason=args.reason or "")
        elif act == "undo":
            res = actionlog.undo(ctx, args.action_id, actor=actor)
        else:  # pragma: no cover - argparse restricts the choices
            raise AssertionError(act)
    except actions.NeedsConfirmation as exc:  # the record changed between the plan printed and the action
        print(f"KHÔNG THỰC HIỆN: {exc}. Thay đổi bây giờ là:", file=sys.stderr)
        for line in exc.plan.lines(ctx.cfg.tz):
            print(f"  - {line}", file=sys.stderr)
        return 1
    except actions.ReviewError as exc:
        print(f"KHÔNG THỰC HIỆN: {exc}", file=sys.stderr)
        return 1
    print(f"#{res.action_id}: {res.message}")
    return 0


def _confirmed(plan: Plan, yes: bool, tz: Any) -> bool:
    """Print what an assign/accept would change in the unit's record; go on only with --yes when it needs a
    confirmation (nothing is changed otherwise)."""
    if not plan.needs_confirmation:
        return True
    print(f"Thao tác này thay đổi hồ sơ của đơn vị {plan.unit_name}:")
    for line in plan.lines(tz):
        print(f"  - {line}")
    if yes:
        return True
    print("KHÔNG THỰC HIỆN: cần xác nhận. Chạy lại lệnh với --yes để thực hiện thay đổi trên.", file=sys.stderr)
    return False


def _when_local(dt: datetime, tz: Any) -> str:
    return dt.astimezone(tz).strftime("%d/%m/%Y %H:%M")
