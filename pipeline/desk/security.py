"""The desk's guard: who is logged in, the CSRF check on every POST, the security headers, log in / out.

Every page needs a logged-in staff account from config; every POST needs the session's CSRF token
(the log-in form its own cookie-bound token); responses carry a strict Content-Security-Policy (no
script at all) and are never cached.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Response, abort, g, redirect, render_template, request, url_for
from werkzeug.security import check_password_hash

from pipeline.config import DeskAccount
from pipeline.desk.auth import CSRF_FIELD, LOGIN_COOKIE, SESSION_COOKIE, dummy_hash, same
from pipeline.desk.web import bp, cookie_secure, desk, safe_next
from pipeline.textnorm import fold

log = logging.getLogger(__name__)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")

PUBLIC = {"desk.login", "static"}


def _account(username: str) -> DeskAccount | None:
    return desk().ctx.cfg.desk.account(username)


@bp.before_app_request
def _authenticate() -> Any:
    g.session = None
    g.account = None
    if request.endpoint == "static":
        return None
    d = desk()
    sess, expired = d.sessions.lookup(request.cookies.get(SESSION_COOKIE))
    if sess is not None:
        account = _account(sess.username)
        if account is None:  # the account was removed from config: its sessions end
            d.sessions.delete(request.cookies.get(SESSION_COOKIE))
            sess = None
        else:
            g.session, g.account = sess, account
    g.expired = expired
    if request.endpoint in PUBLIC:
        return None
    if g.session is None:
        if request.method in ("GET", "HEAD"):
            target = request.full_path if request.query_string else request.path
            return redirect(url_for("desk.login", next=target, expired=1 if expired else None))
        abort(403, "Cần đăng nhập trước khi thực hiện thao tác này.")
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        if not same(request.form.get(CSRF_FIELD), g.session.csrf):
            abort(403, "Thiếu hoặc sai mã bảo vệ biểu mẫu (CSRF). Hãy tải lại trang rồi thử lại.")
    return None


@bp.after_app_request
def _headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Referrer-Policy"] = "same-origin"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if request.endpoint != "static":
        resp.headers["Cache-Control"] = "no-store"
    return resp


# --------------------------------------------------------------------------- log in / out


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    d = desk()
    if request.method == "GET":
        if g.session is not None:
            return redirect(safe_next(request.args.get("next")))
        return _login_page(expired=bool(request.args.get("expired")) or g.get("expired", False))
    if not same(request.form.get(CSRF_FIELD), request.cookies.get(LOGIN_COOKIE)):
        abort(403, "Thiếu hoặc sai mã bảo vệ biểu mẫu đăng nhập. Hãy tải lại trang đăng nhập rồi thử lại.")
    username = (request.form.get("username") or "").strip()[:120]
    password = request.form.get("password") or ""
    keys = (f"user:{fold(username)}", f"addr:{request.remote_addr or '?'}")
    wait = d.throttle.wait_seconds(keys)
    if wait:
        return _login_page(error=f"Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau {wait} giây.",
                           username=username, status=429)
    account = _account(username) if username else None
    ok = check_password_hash(account.password_hash if account else dummy_hash(), password)
    if account is None or not ok or not password:
        d.throttle.failed(keys)
        log.warning("desk: failed log-in for %r from %s", username, request.remote_addr)
        return _login_page(error="Tên đăng nhập hoặc mật khẩu không đúng.", username=username, status=401)
    d.throttle.succeeded(keys)
    d.sessions.delete(request.cookies.get(SESSION_COOKIE))  # a session from before never lives on beside the new one
    token, _sess = d.sessions.create(account.username)
    log.info("desk: %s logged in from %s", account.username, request.remote_addr)
    resp = redirect(safe_next(request.args.get("next") or request.form.get("next")))
    resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict", secure=cookie_secure(), path="/")
    resp.delete_cookie(LOGIN_COOKIE, path="/login", samesite="Strict", httponly=True, secure=cookie_secure())
    return resp


def _login_page(*, error: str | None = None, username: str = "", expired: bool = False, status: int = 200) -> Any:
    import secrets

    token = request.cookies.get(LOGIN_COOKIE)
    if not token or len(token) > 100:
        token = secrets.token_urlsafe(32)
    html = render_template("login.html", error=error, username=username, expired=expired, login_token=token,
                           next=request.args.get("next") or "", no_accounts=not desk().ctx.cfg.desk.accounts)
    resp = Response(html, status=status, mimetype="text/html")
    resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict", secure=cookie_secure(), path="/login")
    return resp


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    d = desk()
    d.sessions.delete(request.cookies.get(SESSION_COOKIE))
    d.flashes.drop(g.session.token_hash)
    resp = redirect(url_for("desk.login"))
    resp.delete_cookie(SESSION_COOKIE, path="/", samesite="Strict", httponly=True, secure=cookie_secure())
    return resp

