"""OAuth 2 for Gmail (XOAUTH2): a long-lived refresh token is exchanged for a short-lived access token.

The refresh token and the client secret come from the environment (or a refresh token file readable by
its owner only, outside the repository), read when a token is needed; config.yaml only names them. The
exchange is one form POST to the token endpoint (``https://oauth2.googleapis.com/token`` by default)
over verified TLS, with the configured timeout. The access token is kept in memory until two minutes
before it expires, so a pass every five minutes asks Google about once an hour.

Errors are ours: :class:`OAuthRefused` when Google says no to the refresh token or the client (a person
must get a new token or fix the client), :class:`OAuthUnavailable` for the network, timeouts and 5xx.
No secret -- refresh token, client secret, access token -- is ever logged or put in an error message.

Getting the refresh token, once: ``python -m pipeline.oauth --config config.yaml --out FILE`` runs the
installed-app flow (consent in a browser, redirect to a one-shot listener on 127.0.0.1, PKCE) and writes
the token to FILE with mode 600, refusing a path inside the repository (see README).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipeline.config import OAuthConfig
from pipeline.errors import OAuthRefused, OAuthUnavailable
from pipeline.settings_checks import is_loopback, secret_file_problem

log = logging.getLogger(__name__)

SCOPE = "https://mail.google.com/"   # the one scope Gmail's IMAP and SMTP accept
MARGIN = 120.0                       # seconds: a token this close to expiry is renewed first
README_HINT = 'README, mục "Kết nối với Gmail thật", phần OAuth 2'


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float  # on the monotonic clock: shortly before the token expires


_cache: dict[tuple[str, str, str], _Token] = {}
_lock = threading.Lock()


def _key(oauth: OAuthConfig, refresh_token: str) -> tuple[str, str, str]:
    # A changed refresh token (new file contents, new environment) is a new key: no stale token is reused.
    return oauth.token_uri, oauth.client_id, hashlib.sha256(refresh_token.encode()).hexdigest()


def xoauth2_string(user: str, access_token: str) -> str:
    """The SASL XOAUTH2 initial response: ``user=…^Aauth=Bearer …^A^A`` (before base64)."""
    return f"user={user}\x01auth=Bearer {access_token}\x01\x01"


def forget(oauth: OAuthConfig) -> None:
    """Drop the cached access token(s) of this client (a server refused one)."""
    with _lock:
        for key in [k for k in _cache if k[0] == oauth.token_uri and k[1] == oauth.client_id]:
            del _cache[key]


def access_token(oauth: OAuthConfig, *, user: str, ca_file: Path | None = None, timeout: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> str:
    """A valid access token for ``user``: the cached one, or a new one from the token endpoint."""
    refresh = oauth.refresh_token()
    key = _key(oauth, refresh)
    with _lock:
        cached = _cache.get(key)
        if cached is not None and cached.renew_at > clock():
            return cached.value
        # Holding the lock through the request: two jobs needing a token at once make one request.
        started = clock()  # the token's life is counted from before the request, never longer than it is
        value, lifetime = _exchange(oauth, refresh, user=user, ca_file=ca_file, timeout=timeout)
        # A token living less than twice the margin is used for half its life rather than not at all.
        margin = min(MARGIN, lifetime / 2)
        _cache[key] = _Token(value, started + lifetime - margin)
        log.info("OAuth: new access token for %s, valid %d s", user, lifetime)
        return value


def _opener(oauth: OAuthConfig, ca_file: Path | None) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = []
    host = urllib.parse.urlsplit(oauth.token_uri).hostname or ""
    if urllib.parse.urlsplit(oauth.token_uri).scheme == "https":
        ctx = ssl.create_default_context()   # certificates and host names always verified
        if ca_file:
            ctx.load_verify_locations(cafile=str(ca_file))
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
    if is_loopback(host):
        handlers.append(urllib.request.ProxyHandler({}))  # a loopback endpoint is never reached via a proxy
    return urllib.request.build_opener(*handlers)


def _exchange(oauth: OAuthConfig, refresh: str, *, user: str, ca_file: Path | None,
              timeout: float) -> tuple[str, float]:
    form = urllib.parse.urlencode({
        "grant_type": "refresh_token",
        "refresh_token": refresh,
        "client_id": oauth.client_id,
        "client_secret": oauth.client_secret(),
    }).encode()
    req = urllib.request.Request(oauth.token_uri, data=form, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
    host = urllib.parse.urlsplit(oauth.token_uri).netloc
    try:
        with _opener(oauth, ca_file).open(req, timeout=timeout) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read() if exc.fp is not None else b""
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise OAuthUnavailable(f"chứng chỉ TLS của máy chủ cấp mã OAuth {host} không hợp lệ: "
                                   f"{reason.verify_message}") from exc
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise OAuthUnavailable(f"máy chủ cấp mã OAuth {host} không trả lời sau {timeout:g} giây; "
                                   "sẽ thử lại ở lượt sau") from exc
        raise OAuthUnavailable(f"không kết nối được máy chủ cấp mã OAuth {host}: {reason}; "
                               "sẽ thử lại ở lượt sau") from exc
    except (socket.timeout, TimeoutError) as exc:
        raise OAuthUnavailable(f"máy chủ cấp mã OAuth {host} không trả lời sau {timeout:g} giây; "
                               "sẽ thử lại ở lượt sau") from exc
    except OSError as exc:
        raise OAuthUnavailable(f"lỗi mạng với máy chủ cấp mã OAuth {host}: {exc}; sẽ thử lại ở lượt sau") from exc

    try:
        data = json.loads(body.decode("utf-8")) if body else {}
    except (UnicodeDecodeError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    if status == 200:
        token = data.get("access_token")
        lifetime = data.get("expires_in", 3600)
        if not isinstance(token, str) or not token or isinstance(lifetime, bool) or not isinstance(lifetime, (int, float)):
            raise OAuthUnavailable(f"máy chủ cấp mã OAuth {host} trả lời không đúng dạng (thiếu access_token); "
                                   "sẽ thử lại ở lượt sau")
        return token, float(max(lifetime, 1))
    error = str(data.get("error") or "")
    desc = str(data.get("error_description") or "")
    said = f"{error}: {desc}" if desc else (error or f"HTTP {status}")
    if status >= 500 or status == 429:
        raise OAuthUnavailable(f"máy chủ cấp mã OAuth {host} tạm thời lỗi (HTTP {status}, {said}); "
                               "sẽ thử lại ở lượt sau")
    if error == "invalid_grant":
        raise OAuthRefused(
            f"Google không chấp nhận refresh token của {user} nữa: token đã hết hạn hoặc bị thu hồi ({said}). "
            f"Cần lấy refresh token mới ({README_HINT}) và thay vào {oauth.secret_source()}. "
            "Lưu ý: khi ứng dụng OAuth còn ở trạng thái \"Testing\" trong Google Cloud, refresh token chỉ sống "
            "7 ngày; chuyển sang \"In production\" để token không tự hết hạn.")
    if error in ("invalid_client", "unauthorized_client"):
        raise OAuthRefused(
            f"Google từ chối ứng dụng OAuth ({said}): client_id {oauth.client_id!r} trong config hoặc client "
            f"secret trong biến môi trường {oauth.client_secret_env} sai, hoặc OAuth client đã bị xoá "
            "(Google Cloud Console → APIs & Services → Credentials).")
    raise OAuthRefused(f"Google từ chối cấp mã truy cập cho {user} (HTTP {status}, {said}); "
                       f"xem {README_HINT}.")


# --------------------------------------------------------------------------------------------
# obtaining the refresh token once: python -m pipeline.oauth --config config.yaml --out FILE

GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/v2/auth"


def obtain_refresh_token(oauth_cfg: OAuthConfig, *, login_hint: str | None = None,
                         auth_uri: str = GOOGLE_AUTH_URI, ca_file: Path | None = None, timeout: float = 300.0,
                         open_browser: Callable[[str], object] | None = None,
                         say: Callable[[str], object] = print) -> str:
    """The installed-app flow (RFC 8252): consent in a browser, redirect to a one-shot listener on
    127.0.0.1, PKCE-protected code exchanged for a refresh token. Returns the refresh token."""
    import base64
    import secrets
    import webbrowser
    from http.server import BaseHTTPRequestHandler, HTTPServer

    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(16)
    got: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            if "code" not in query and "error" not in query:
                self.send_response(404)
                self.end_headers()
                return
            got.update(query)
            body = ("<!doctype html><meta charset=utf-8><title>intake</title><p>Xong. Có thể đóng cửa sổ này "
                    "và quay lại cửa sổ dòng lệnh.</p>").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = timeout
    redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/"
    params = {"client_id": oauth_cfg.client_id, "redirect_uri": redirect_uri, "response_type": "code",
              "scope": SCOPE, "access_type": "offline", "prompt": "consent", "state": state,
              "code_challenge": challenge, "code_challenge_method": "S256"}
    if login_hint:
        params["login_hint"] = login_hint
    url = f"{auth_uri}?{urllib.parse.urlencode(params)}"
    say(f"Mở địa chỉ này trong trình duyệt, đăng nhập bằng {login_hint or 'tài khoản Gmail của hộp thư'} "
        f"và bấm Cho phép / Open this address, sign in and allow:\n\n  {url}\n")
    try:
        opener = open_browser or webbrowser.open
        threading.Thread(target=opener, args=(url,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not got and time.monotonic() < deadline:
            server.handle_request()
    finally:
        server.server_close()
    if not got:
        raise OAuthUnavailable(f"không nhận được trả lời từ trình duyệt sau {timeout:g} giây")
    if got.get("state") != state:
        raise OAuthRefused("trả lời từ trình duyệt không khớp (state sai); làm lại từ đầu")
    if "error" in got:
        raise OAuthRefused(f"Google không cấp quyền: {got['error']} {got.get('error_description', '')}".strip())
    form = urllib.parse.urlencode({
        "grant_type": "authorization_code", "code": got["code"], "redirect_uri": redirect_uri,
        "client_id": oauth_cfg.client_id, "client_secret": oauth_cfg.client_secret(), "code_verifier": verifier,
    }).encode()
    req = urllib.request.Request(oauth_cfg.token_uri, data=form, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with _opener(oauth_cfg, ca_file).open(req, timeout=60) as resp:
            data = json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise OAuthRefused(f"Google không đổi mã lấy token (HTTP {exc.code}: {exc.read()[:200]!r})") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise OAuthUnavailable(f"không lấy được token từ {oauth_cfg.token_uri}: {exc}") from exc
    token = data.get("refresh_token") if isinstance(data, dict) else None
    if not token:
        raise OAuthRefused("Google không trả refresh token (thiếu access_type=offline/prompt=consent, "
                           "hoặc phạm vi không phải https://mail.google.com/)")
    return str(token)


def write_secret_file(path: Path, value: str) -> None:
    """Write ``value`` to ``path`` readable by its owner only (0600), refusing a path inside the repo."""
    path = path.expanduser().resolve()
    root = Path(__file__).resolve().parent.parent
    if path.is_relative_to(root):
        raise OAuthRefused(f"không ghi refresh token vào {path}: nằm trong thư mục mã nguồn {root}; chọn chỗ "
                           "khác, ví dụ /etc/intake/refresh-token")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (value + "\n").encode())
    finally:
        os.close(fd)
    problem = secret_file_problem(path)
    if problem:
        raise OAuthRefused(problem)


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.oauth --config config.yaml --out /etc/intake/refresh-token``"""
    import argparse
    import sys

    from pipeline.config import oauth_setup
    from pipeline.errors import IntakeError

    p = argparse.ArgumentParser(prog="python -m pipeline.oauth",
                                description="Lấy refresh token OAuth 2 cho hộp thư Gmail (một lần) và ghi vào tệp 600.")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--section", choices=("mailbox", "smtp"), default="mailbox",
                   help="whose oauth block to use (default mailbox)")
    p.add_argument("--out", required=True, type=Path, help="tệp refresh token, ngoài repo (sẽ có quyền 600)")
    p.add_argument("--no-browser", action="store_true", help="chỉ in địa chỉ, không tự mở trình duyệt")
    p.add_argument("--auth-uri", default=GOOGLE_AUTH_URI, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        # Only this section is needed (the refresh token file may not exist yet, so no full load_config).
        server = oauth_setup(args.config, args.section)
        assert server.oauth is not None
        token = obtain_refresh_token(server.oauth, login_hint=server.username,
                                     auth_uri=args.auth_uri, ca_file=server.ca_file,
                                     open_browser=(lambda url: None) if args.no_browser else None,
                                     say=lambda text: print(text, file=sys.stderr))
        write_secret_file(args.out, token)
    except IntakeError as exc:
        print(f"lỗi: {exc}", file=sys.stderr)
        return 1
    print(f"Đã ghi refresh token vào {args.out} (quyền 600). Trong config đặt "
          f"{args.section}.oauth.refresh_token_file: {args.out} (hoặc nạp nó vào biến môi trường "
          "refresh_token_env nêu tên).", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
