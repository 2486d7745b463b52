"""`intake city report --config city.yaml [--year Y] [--today D] [--out DIR]` and `intake city serve --config city.yaml`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def cmd_city(args: argparse.Namespace) -> int:
    from pipeline.city.config import load_city

    # `intake city report --config city.yaml`, or the global `intake --config city.yaml city report`
    given = args.city_config or (args.config if args.config != "config.yaml" else None)
    city = load_city(given or "city.yaml")
    if args.city_action == "report":
        from pipeline.city.page import write_report

        written = write_report(city, year=args.year, today=args.today, out_dir=Path(args.out) if args.out else None)
        print(written.text())
        return 0 if all(d.ok for d in written.figures.districts) else 1
    return _serve(city, args)


def _serve(city: Any, args: argparse.Namespace) -> int:
    from pipeline.city.page import create_city_app
    from pipeline.desk.server import DeskServer

    port = args.port or city.port
    try:
        server = DeskServer(create_city_app(city, year=args.year), city.host, port)
    except OSError as exc:
        print(f"LỖI: không mở được cổng {city.host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2

    server.serve_until_stopped(f"Trang tổng hợp {city.name}: {server.url}  (chỉ mở trên máy này; Ctrl+C để dừng)",
                               "Đã dừng trang tổng hợp.")
    return 0


def add_city_parser(sub: Any, day: Any) -> None:
    """The `city` subcommand; ``day`` parses --today (the CLI's YYYY-MM-DD type)."""
    c = sub.add_parser("city", help="the city federation's view across districts: workbook and page (city.yaml)")
    c.add_argument("city_action", choices=["report", "serve"],
                   help="report: write the workbook and the page of the day | serve: the page on 127.0.0.1")
    c.add_argument("--config", dest="city_config", help="path to city.yaml (default: ./city.yaml)")
    c.add_argument("--year", type=int, help="the campaign to show (default: year in city.yaml, else each district's)")
    c.add_argument("--today", type=day, help="report: figures as of YYYY-MM-DD (default: today)")
    c.add_argument("--out", help="report: folder for the files (default: out in city.yaml, else reports/ beside it)")
    c.add_argument("--port", type=int, help="serve: port (default: serve.port in city.yaml, 8770)")
    c.set_defaults(func=cmd_city)


__all__ = ["add_city_parser", "cmd_city"]
