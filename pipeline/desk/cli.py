"""`intake desk [serve|hash-password] [--host H] [--port P]`."""
from __future__ import annotations

import argparse
import getpass
import logging
import sys

from pipeline.settings_checks import is_loopback

log = logging.getLogger(__name__)


def cmd_serve(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.desk.app import create_app
    from pipeline.desk.server import DeskServer
    from pipeline.context import Context

    cfg = load_config(args.config)
    host = getattr(args, "host", None) or cfg.desk.host
    port = getattr(args, "port", None) or cfg.desk.port
    ctx = Context(cfg)
    app = create_app(ctx)
    try:
        server = DeskServer(app, host, port)
    except OSError as exc:
        print(f"LỖI: không mở được cổng {host}:{port} cho bàn làm việc: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if not cfg.desk.accounts:
        print("Lưu ý: chưa có tài khoản nào trong desk.accounts của config.yaml nên chưa ai đăng nhập được; "
              "tạo chuỗi băm mật khẩu bằng `intake desk hash-password`.", file=sys.stderr)
    if not is_loopback(host):
        print(f"Lưu ý: bàn làm việc đang mở trên {host}, không chỉ trên máy này; hãy đặt nó sau một reverse "
              "proxy có HTTPS.", file=sys.stderr)

    try:
        server.serve_until_stopped(f"Bàn làm việc {cfg.organisation}: {server.url}  (Ctrl+C để dừng)",
                                   "Đã dừng bàn làm việc.")
    finally:
        ctx.store.engine.dispose()
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Mật khẩu mới: ")
        again = getpass.getpass("Nhập lại mật khẩu: ")
        if first != again:
            raise ValueError("hai lần nhập không giống nhau")
        return first
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def cmd_hash_password(args: argparse.Namespace) -> int:
    from werkzeug.security import generate_password_hash

    try:
        password = _read_password()
    except (ValueError, EOFError, KeyboardInterrupt) as exc:
        print(f"LỖI: {exc or 'đã huỷ'}", file=sys.stderr)
        return 1
    if len(password) < 8:
        print("LỖI: mật khẩu cần ít nhất 8 ký tự.", file=sys.stderr)
        return 1
    print(generate_password_hash(password))
    if sys.stdin.isatty():
        print("Chép chuỗi trên vào desk.accounts[].password_hash trong config.yaml.", file=sys.stderr)
    return 0
