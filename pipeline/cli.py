"""Command line: argument parsing, logging setup, and building the real adapters."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from pipeline.config import load_config
from pipeline.errors import ConfigError, IntakeError, SchemaOutdated
from pipeline.reviewcli import add_review_parser
from pipeline.ledger.dbcli import add_db_parser
from pipeline.city.cli import add_city_parser

log = logging.getLogger("pipeline")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # aiosmtpd (the demo's embedded SMTP server) logs every connection at INFO.
    logging.getLogger("mail.log").setLevel(logging.WARNING)


def _context(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from pipeline.context import Context

    return Context(load_config(args.config))


def cmd_poll(args: argparse.Namespace) -> int:
    from pipeline.worker.mailpass import run_pass

    from pipeline.progress import progress

    ctx = _context(args)
    with progress(None, "Đang nhận thư") as bar:
        summary = run_pass(ctx, progress=lambda done, _total: bar.update(done - bar.n))
    print(f"fetched {summary.fetched}, new {summary.new}, duplicates {summary.duplicates}, "
          f"recovered {summary.recovered}, states {summary.states}, outbox {summary.outbox}"
          + (", UIDVALIDITY changed: re-scanned" if summary.uidvalidity_changed else ""))
    if summary.error:
        print(f"LỖI: {summary.error}", file=sys.stderr)
        return 2
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pipeline.ledger.export import export

    ctx = _context(args).for_year(args.year)
    data = export(ctx.store, ctx.cfg.tz, None if args.all_years else ctx.year)
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
        print(f"export written to {args.out}")
    else:
        sys.stdout.write(text + "\n")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline.ledger.export import status_text

    ctx = _context(args).for_year(args.year)
    print(status_text(ctx.store, ctx.units, ctx.cfg.tz, ctx.year, kind_label=ctx.rules.kind_label))
    return 0


def cmd_reprocess(args: argparse.Namespace) -> int:
    from pipeline.worker.mailpass import reprocess

    from pipeline.progress import progress

    ctx = _context(args)
    with progress(len(args.ids), "Đang xử lý lại") as bar:
        for pk in args.ids:
            try:
                state = reprocess(ctx, pk)
            except KeyError:
                print(f"không có thư #{pk}", file=sys.stderr)
                return 1
            print(f"#{pk}: {state}")
            bar.update()
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    ctx = _context(args)
    if args.action == "retry":
        for oid in args.ids:
            ok = ctx.store.retry_outbox(oid, datetime.now(timezone.utc))
            print(f"#{oid}: {'sẽ gửi lại' if ok else 'không ở trạng thái uncertain/failed'}")
        return 0
    for o in ctx.store.outbox_rows():
        print(f"#{o.id} [{o.state}] {o.purpose} → {', '.join(json.loads(o.recipients))}: {o.subject}"
              + (f" ({o.last_error})" if o.last_error else ""))
    return 0


def _day(text: str):  # type: ignore[no-untyped-def]
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"ngày phải viết YYYY-MM-DD, ví dụ 2022-02-20: {text!r}") from exc


def cmd_remind(args: argparse.Namespace) -> int:
    from pipeline.plan.reminders import run_reminders

    ctx = _context(args).for_year(args.year)
    summary = run_reminders(ctx, today=args.today, dry_run=args.dry_run)
    print(summary.text())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.plan.staffreport import run_report

    ctx = _context(args).for_year(args.year)
    summary = run_report(ctx, today=args.today, out_dir=Path(args.out) if args.out else None, send=args.send)
    print(summary.text())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.worker.service import run_worker

    paths = args.configs or [args.config]
    return run_worker([Path(p) for p in paths], poll_seconds=args.poll_seconds, wait=not args.no_wait)


def cmd_forms(args: argparse.Namespace) -> int:
    # Only the config, the rules and the units: writing blank forms needs no database.
    from pipeline.context import campaigns_of
    from pipeline.forms.blank import write_forms
    from pipeline.forms.rules import load_rules
    from pipeline.plan.units import load_units

    cfg = load_config(args.config)
    rules = load_rules(cfg.rules_dir)
    campaigns = campaigns_of(cfg, rules)
    year = args.year or cfg.year
    campaign = campaigns.get(year)
    if campaign is None:
        print(f"không có kế hoạch nào cho năm {year} (kế hoạch đầu tiên: năm {campaigns.first_year})", file=sys.stderr)
        return 1
    unit_name = None
    if args.unit:
        unit = load_units(cfg.units_file).by_id(args.unit)
        if unit is None:
            print(f"không có đơn vị {args.unit!r} trong danh sách", file=sys.stderr)
            return 1
        unit_name = unit.name
    for path in write_forms(Path(args.out), year=year, unit_name=unit_name, forms=campaign.forms, rules=rules):
        print(path)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from intake_demo.demo import run_demo
    except ImportError as exc:  # pymap / aiosmtpd are the 'demo' extra
        print(f"intake demo cần gói bổ sung ({exc.name}): pip install -e '.[demo]'", file=sys.stderr)
        return 2

    return run_demo(Path(args.out))


def _actor(args: argparse.Namespace) -> str:
    import getpass

    if getattr(args, "actor", None):
        return str(args.actor)
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name in a container
        return "cli"


def cmd_units(args: argparse.Namespace) -> int:
    from pipeline.desk import unitsadmin

    ctx = _context(args)
    act = args.units_action
    if act == "list":
        for u in ctx.units.units:
            print(f"{u.unit_id}\t{u.group}\t{u.name}\t{';'.join(u.emails)}")
        return 0
    if act == "export":
        data, name, _mime = unitsadmin.units_file_bytes(ctx)
        out = Path(args.out or name)
        out.write_bytes(data)
        print(out)
        return 0
    if act in ("check", "replace"):
        path = Path(args.file)
        try:
            data = path.read_bytes()
        except OSError as exc:
            print(f"không đọc được {path}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        if act == "check":
            result = unitsadmin.check_upload(data, path.name, ctx.units)
        else:
            result = unitsadmin.replace_units(ctx, data, path.name, actor=_actor(args))
        print(result.text() + ("" if act == "check" or not result.ok else f"\nĐã thay {ctx.cfg.units_file}."))
        return 0 if result.ok else 1
    try:
        if act == "add-address":
            done = unitsadmin.add_address(ctx, args.unit, args.address)
        else:
            done = unitsadmin.remove_address(ctx, args.unit, args.address)
    except unitsadmin.UnitsError as exc:
        print(f"KHÔNG THỰC HIỆN: {exc}", file=sys.stderr)
        return 1
    print("đã cập nhật" if done else "không có gì thay đổi")
    return 0


def cmd_desk(args: argparse.Namespace) -> int:
    from pipeline.desk import cli as desk_cli

    if args.desk_action == "hash-password":
        return desk_cli.cmd_hash_password(args)
    return desk_cli.cmd_serve(args)


def _year_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--year", type=int, help="the campaign (plan year) to show; default: year in config.yaml")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="intake", description="Email intake for LĐLĐ quận Long Biên")
    p.add_argument("--config", default="config.yaml", help="path to config.yaml (default: ./config.yaml)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("poll", help="one intake pass").set_defaults(func=cmd_poll)
    e = sub.add_parser("export", help="everything recorded, as JSON")
    e.add_argument("--format", choices=["json"], default="json")
    e.add_argument("--out", help="write to this file instead of stdout")
    _year_option(e)
    e.add_argument("--all-years", action="store_true", help="every campaign, not only one")
    e.set_defaults(func=cmd_export)
    st = sub.add_parser("status", help="readable summary, what needs a person first")
    _year_option(st)
    st.set_defaults(func=cmd_status)
    r = sub.add_parser("reprocess", help="replay recorded mail from its archived copy")
    r.add_argument("ids", type=int, nargs="+")
    r.set_defaults(func=cmd_reprocess)
    o = sub.add_parser("outbox", help="list the outbox, or release uncertain/failed items")
    o.add_argument("action", choices=["list", "retry"], nargs="?", default="list")
    o.add_argument("ids", type=int, nargs="*")
    o.set_defaults(func=cmd_outbox)
    rm = sub.add_parser("remind", help="send the reminders due today to units that still owe a document")
    rm.add_argument("--today", type=_day, help="decide as if today were YYYY-MM-DD (default: today)")
    rm.add_argument("--dry-run", action="store_true", help="list who would be reminded; record and send nothing")
    _year_option(rm)
    rm.set_defaults(func=cmd_remind)
    rp = sub.add_parser("report", help="write the consolidated workbook; --send mails it to staff")
    rp.add_argument("--today", type=_day, help="figures as of YYYY-MM-DD (default: today)")
    rp.add_argument("--out", help="folder for the .xlsx (default: reports/ beside the config file)")
    rp.add_argument("--send", action="store_true", help="also email it to staff (once per day and occasion)")
    _year_option(rp)
    rp.set_defaults(func=cmd_report)
    rn = sub.add_parser("run", help="the worker: poll, reminders, reports on a schedule; one worker per district "
                                    "at a time, others stand by and take over")
    rn.add_argument("-c", "--config", dest="configs", action="append", metavar="CONFIG",
                    help="a district's config file; repeat to serve several districts (default: --config before run)")
    rn.add_argument("--no-wait", action="store_true",
                    help="leave a district served by another worker to it (exit 3 if none is left) instead of "
                         "standing by")
    rn.add_argument("--poll-seconds", type=int, default=None, help=argparse.SUPPRESS)  # tests only
    rn.set_defaults(func=cmd_run)
    f = sub.add_parser("forms", help="write the blank forms of a campaign (rules/forms/ definitions) as fillable "
                                     ".xlsx that read back with no finding; reads --config for the rules")
    f.add_argument("--out", default="forms", help="folder to write them to (default: ./forms)")
    f.add_argument("--unit", help="pre-fill the ĐƠN VỊ line with this unit_id from the units file")
    f.add_argument("--year", type=int, help="the campaign whose forms to write (default: year in config.yaml)")
    f.set_defaults(func=cmd_forms)
    add_review_parser(sub)
    un = sub.add_parser("units", help="the units list: list, check or replace from a CSV/XLSX, export, addresses")
    uns = un.add_subparsers(dest="units_action", required=True)
    uns.add_parser("list")
    ck = uns.add_parser("check", help="check a new units file; nothing is changed")
    ck.add_argument("file")
    rp_ = uns.add_parser("replace", help="replace the units list with this file if it passes every check")
    rp_.add_argument("file")
    rp_.add_argument("--actor")
    ex = uns.add_parser("export", help="write the current units file")
    ex.add_argument("--out")
    for name in ("add-address", "remove-address"):
        ad = uns.add_parser(name)
        ad.add_argument("unit")
        ad.add_argument("address")
    un.set_defaults(func=cmd_units)
    dk = sub.add_parser("desk", help="the district office's web desk (Vietnamese), on 127.0.0.1 by default")
    dk.add_argument("desk_action", nargs="?", choices=["serve", "hash-password"], default="serve",
                    help="serve (default) | hash-password: print a password hash for config desk.accounts")
    dk.add_argument("--host", help="address to listen on (default: desk.host in config, 127.0.0.1)")
    dk.add_argument("--port", type=int, help="port (default: desk.port in config, 8765)")
    dk.set_defaults(func=cmd_desk)
    d = sub.add_parser("demo", help="embedded IMAP+SMTP, sample mail from several units, one full pass")
    d.add_argument("--out", default="demo-output", help="where to write the demo's results")
    d.set_defaults(func=cmd_demo)
    add_db_parser(sub)
    add_city_parser(sub, _day)
    return p


def main(argv: list[str] | None = None) -> int:
    # The ledger, the workbooks and the exports hold people's names and addresses: the service's user only
    os.umask(0o077)
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"Cấu hình không hợp lệ / invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except SchemaOutdated as exc:  # like a bad config: found at start, a person must act
        print(f"LỖI: {exc}", file=sys.stderr)
        return 2
    except IntakeError as exc:
        print(f"LỖI: {exc}", file=sys.stderr)
        return 1
