"""OAuth 2 for Gmail (XOAUTH2): a long-lived refresh token is exchanged for a short-lived access token.

The refresh token and the client secret come from the environment (or a refresh token file readable by
its owner only, outside the repository), read when a token is needed; config.yaml only names them. The
exchange is one form POST to the token endpoint (``https://oauth2.googleapis.com/token`` by default)
over verified TLS, with the configured timeout. The access token is kept in memory until two minutes
before it expires, so a pass every five minutes asks Google about once an hour.

Errors are ours: :class:`OAuthRefused` when Google says no to the refresh token or the client (a person
must get a new token or fix the client), :class:`OAuthUnavailable` for the network, timeouts and 5xx.
No secret -- refresh token, client secret, access token -- is ever logged or put in an error message.
"""
from __future__ import annotations

import hashlib
import json
import logging
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

from pipeline.config import OAuthConfig, _is_loopback
from pipeline.errors import OAuthRefused, OAuthUnavailable

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
    if _is_loopback(host):
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
