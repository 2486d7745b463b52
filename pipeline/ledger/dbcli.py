"""`intake db upgrade | current | rebind`: the database's schema, for the person installing a new version, and
the mailbox a ledger serves (context.bind_mailbox), for a district that changed its mailbox.

Apart from migrate.py so that building the CLI's parser imports neither SQLAlchemy nor Alembic.
"""
from __future__ import annotations

import argparse
from typing import Any


def add_db_parser(sub: Any) -> None:
    """Register `intake db …` on the CLI's subcommands."""
    db = sub.add_parser("db", help="the database's schema: upgrade it after installing a new version, or show it")
    dbs = db.add_subparsers(dest="db_action", required=True)
    dbs.add_parser("upgrade", help="upgrade a database made by an older version (nothing is lost); "
                                   "rows that name no year go to the configured year")
    dbs.add_parser("current", help="the database's schema revision")
    dbs.add_parser("rebind", help="after the district changed its mailbox: the ledger serves the mailbox of this "
                                  "config from now on")
    db.set_defaults(func=cmd_db)


def cmd_db(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.ledger import migrate

    cfg = load_config(args.config)
    place = migrate.where(cfg.database_url)
    if args.db_action == "rebind":
        return _rebind(cfg, place)
    if args.db_action == "upgrade":
        done = migrate.upgrade(cfg.database_url, cfg.year)
        if done.created:
            print(f"Đã tạo cơ sở dữ liệu {place} (lược đồ {done.after}).")
        elif done.before == done.after:
            print(f"Cơ sở dữ liệu {place} đã ở lược đồ mới nhất ({done.after}); không có gì thay đổi.")
        else:
            source = done.before or "của phiên bản đầu tiên"
            print(f"Đã nâng cấp cơ sở dữ liệu {place} từ lược đồ {source} lên {done.after}; "
                  f"dữ liệu đã có được gắn với kế hoạch năm {cfg.year}.")
        return 0
    revision, has_tables = migrate.current(cfg.database_url)
    if not has_tables:
        print(f"Cơ sở dữ liệu {place} chưa có (sẽ được tạo ở lần chạy đầu tiên).")
    elif revision == migrate.HEAD:
        print(f"Cơ sở dữ liệu {place}: lược đồ {revision} (mới nhất).")
    elif revision is not None and revision not in migrate.REVISIONS:
        print(f"Cơ sở dữ liệu {place}: lược đồ {revision}, của một phiên bản intake mới hơn phiên bản này.")
    else:
        print(f"Cơ sở dữ liệu {place}: lược đồ {revision or 'của phiên bản đầu tiên (chưa đánh số)'}, cũ; "
              "chạy: intake db upgrade")
    return 0


def _rebind(cfg: Any, place: str) -> int:
    from datetime import datetime, timezone

    from pipeline.context import MAILBOX_KEY, mailbox_identity
    from pipeline.ledger.store import Store

    store = Store(cfg.database_url, cfg.storage)
    before, after = store.get_kv(MAILBOX_KEY), mailbox_identity(cfg)
    store.set_kv(MAILBOX_KEY, after, datetime.now(timezone.utc))
    print(f"Sổ ghi {place} từ nay phục vụ hộp thư {after}" + (f" (trước đây: {before})." if before else "."))
    return 0
