"""Gmail's usual refusals (IMAP and SMTP replies) in plain Vietnamese, and the hold-off on refused passwords.

:data:`REFUSALS` is the one table of what Gmail says when it will not let us in or take a mail, and
what a person should do about each; the IMAP session (mailbox.py) and the SMTP transport
(outbox/smtp.py) both translate their servers' replies with it. A password Gmail refused is not
offered again for :data:`HOLD_OFF` seconds unless it changes (:data:`refused_logins`): repeated bad
logins make Google lock the account.
"""
from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from pipeline.config import ServerConfig


@dataclass(frozen=True)
class Refusal:
    kind: str
    permanent: bool     # a person must act; retrying with the same settings will not help
    advice: str         # what happened and what to do; may use {user}, {host}, {secret}
    oauth_advice: str | None = None  # instead of advice when the login was XOAUTH2


APP_PASSWORD_STEPS = (
    "tạo mật khẩu ứng dụng mới: Tài khoản Google (myaccount.google.com) → Bảo mật → Xác minh 2 bước "
    "(phải đang bật) → Mật khẩu ứng dụng → đặt tên \"intake\" → Tạo; chép 16 chữ cái đó vào {secret} "
    "rồi khởi động lại dịch vụ")
ENABLE_IMAP_STEPS = (
    "vào Gmail trên web bằng tài khoản {user} → Cài đặt (bánh răng) → Xem tất cả chế độ cài đặt → "
    "Chuyển tiếp và POP/IMAP → Truy cập IMAP: Bật IMAP → Lưu thay đổi "
    "(Settings → See all settings → Forwarding and POP/IMAP → Enable IMAP)")
NEW_REFRESH_TOKEN = ('lấy lại refresh token (README, mục "Kết nối với Gmail thật", phần OAuth 2) '
                     "và thay vào {secret}")

# First match wins (case-insensitive substrings of the server's reply): specific before generic.
REFUSALS: tuple[tuple[tuple[str, ...], Refusal], ...] = (
    (("Too many simultaneous connections", "Too many connections", "Maximum number of connections"),
     Refusal("too_many_connections", False,
             "Gmail từ chối vì đang có quá nhiều kết nối IMAP cùng lúc tới hộp thư {user} (Gmail cho tối đa 15): "
             "đóng bớt các chương trình thư, điện thoại hay máy khác đang mở hộp thư này bằng IMAP; "
             "hệ thống tự thử lại ở lượt sau")),
    (("Too many login attempts", "Too many login failures"),
     Refusal("too_many_logins", False,
             "Gmail tạm chặn đăng nhập của {user} vì có quá nhiều lần đăng nhập; hệ thống tự thử lại sau. "
             "Nếu lỗi kéo dài, kiểm tra mật khẩu ứng dụng trong {secret}")),
    (("not enabled for IMAP use", "IMAP access is disabled"),
     Refusal("imap_disabled", True, "IMAP đang tắt cho hộp thư {user}. Bật IMAP: " + ENABLE_IMAP_STEPS
             + "; với tài khoản Google Workspace, quản trị viên tên miền phải cho phép IMAP trước "
               "(Admin console → Ứng dụng → Google Workspace → Gmail → Quyền truy cập của người dùng cuối)")),
    (("Application-specific password required", "InvalidSecondFactor"),
     Refusal("app_password_required", True,
             "Gmail đòi mật khẩu ứng dụng cho {user}, không nhận mật khẩu đăng nhập Google thông thường: "
             + APP_PASSWORD_STEPS)),
    (("Please log in via your web browser", "WebLoginRequired"),
     Refusal("web_login", True,
             "Google chặn lần đăng nhập này của {user} và đòi đăng nhập qua trình duyệt: mở "
             "https://accounts.google.com bằng tài khoản đó, xác nhận cảnh báo bảo mật (\"Đúng, đó là tôi\") "
             "nếu có; kiểm tra IMAP đã bật (" + ENABLE_IMAP_STEPS + ") và đang dùng mật khẩu ứng dụng")),
    (("[AUTHENTICATIONFAILED]", "Invalid credentials", "Username and Password not accepted", "BadCredentials",
      "5.7.8 "),
     Refusal("wrong_password", True,
             "Gmail không chấp nhận mật khẩu của {user} (sai mật khẩu ứng dụng, hoặc nó đã bị thu hồi khi đổi "
             "mật khẩu Google): " + APP_PASSWORD_STEPS,
             oauth_advice="Gmail không chấp nhận mã truy cập OAuth của {user}: refresh token phải được cấp cho "
                          "chính tài khoản {user} với phạm vi https://mail.google.com/; " + NEW_REFRESH_TOKEN)),
    (("Daily user sending quota exceeded", "Daily user sending limit exceeded"),
     Refusal("sending_limit", False,
             "Gmail đã hết hạn mức gửi thư trong ngày của {user}; thư còn lại nằm chờ trong hàng đợi và tự gửi "
             "khi hạn mức mở lại (sau tối đa 24 giờ)")),
    (("[UNAVAILABLE]", "System Error", "Temporary System Problem", "Try again later"),
     Refusal("unavailable", False, "máy chủ {host} tạm thời không phục vụ; hệ thống tự thử lại ở lượt sau")),
)
_CREDENTIALS = {"wrong_password", "app_password_required"}
HOLD_OFF = 30 * 60.0


def match_refusal(reply: str) -> Refusal | None:
    """The known refusal ``reply`` is, if any."""
    low = reply.lower()
    for needles, refusal in REFUSALS:
        if any(n.lower() in low for n in needles):
            return refusal
    return None


def refusal_of(kind: str) -> Refusal:
    return next(r for _needles, r in REFUSALS if r.kind == kind)


def secret_source(cfg: ServerConfig) -> str:
    """Where the secret comes from, for messages (never the secret)."""
    if cfg.auth == "xoauth2" and cfg.oauth is not None:
        return cfg.oauth.secret_source()
    return f"biến môi trường {cfg.password_env}" if cfg.password_env else "biến môi trường password_env"


def describe_refusal(refusal: Refusal, cfg: ServerConfig, service: str, reply: str) -> str:
    advice = refusal.oauth_advice if cfg.auth == "xoauth2" and refusal.oauth_advice else refusal.advice
    text = advice.format(user=cfg.username or "", host=cfg.host, secret=secret_source(cfg))
    return f"{service} {cfg.username or ''}@{cfg.host}: {text} (máy chủ trả lời: {reply})"


def reply_text(exc: BaseException) -> str:
    """The server's words from an imapclient/imaplib error (they come as ``b'...'``)."""
    text = str(exc) or exc.__class__.__name__
    m = re.fullmatch(r"""b(['"])(.*)\1""", text, re.S)
    return (m.group(2) if m else text).strip()


class _RefusedLogins:
    """Passwords Gmail refused, by server, user and a digest of the password (in memory only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int, str, str], tuple[float, float, str]] = {}

    @staticmethod
    def _key(cfg: ServerConfig, secret: str) -> tuple[str, int, str, str]:
        return cfg.host, cfg.port, cfg.username or "", hashlib.sha256(secret.encode()).hexdigest()

    def note(self, cfg: ServerConfig, secret: str | None, refusal: Refusal | None, message: str) -> None:
        """Remember a refusal of this very password (other refusals are not about the password)."""
        if secret is None or refusal is None or refusal.kind not in _CREDENTIALS:
            return
        with self._lock:
            self._seen[self._key(cfg, secret)] = (time.monotonic(), time.time(), message)

    def check(self, cfg: ServerConfig, secret: str | None) -> str | None:
        """While the hold-off lasts, the earlier refusal of this password (to raise again), else None."""
        if secret is None:
            return None
        key = self._key(cfg, secret)
        with self._lock:
            seen = self._seen.get(key)
            if seen is None:
                return None
            if time.monotonic() - seen[0] >= HOLD_OFF:
                del self._seen[key]
                return None
        when = datetime.fromtimestamp(seen[1]).strftime("%H:%M")
        again = datetime.fromtimestamp(seen[1] + HOLD_OFF).strftime("%H:%M")
        return (f"{seen[2]} — chưa đăng nhập lại: Gmail đã từ chối đúng mật khẩu này lúc {when}; thử lại từ "
                f"{again}, hoặc ngay khi mật khẩu được thay (đăng nhập sai nhiều lần làm Google khoá tài khoản)")

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


refused_logins = _RefusedLogins()
