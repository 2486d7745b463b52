"""Liveness: staff hear when the mailbox cannot be read, and when no mail comes before a deadline.

Each successful poll is recorded (kv ``poll.last_ok``). When polls have failed for
``worker.alert_after_minutes``, staff get ONE alert saying what is wrong and what to check, and
one more when polling recovers. When polls succeed but no mail has arrived for
``worker.quiet_alert_days`` while a deadline is at most ``worker.quiet_days_before_deadline`` days
away, staff get one alert for that deadline (and one when mail arrives again). Alerts go to the
outbox; the poll job (jobs.py) sends them.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from pipeline.config import Config
from pipeline.ledger.schema import from_iso, iso
from pipeline.ledger.store import Store
from pipeline.outbox.alerts import local_time, staff_alert

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def check_liveness(ctx: Any, now: datetime, error: str | None, clock: Callable[[], datetime] = _utcnow) -> list[str]:
    """Record the poll's outcome; enqueue at most one alert per episode. Returns what was enqueued."""
    cfg: Config = ctx.cfg
    store: Store = ctx.store
    stamp = clock()
    notes: list[str] = []
    failing_since = store.get_kv("poll.failing_since") or ""
    if error is None:
        store.set_kv("poll.last_ok", iso(now), stamp)
        if not store.get_kv("poll.first_ok"):
            store.set_kv("poll.first_ok", iso(now), stamp)
        if failing_since:
            if store.get_kv("alert.poll_down") == failing_since:
                body = (f"Hệ thống tiếp nhận thư của {cfg.organisation} đã đọc được hộp thư "
                        f"{cfg.mailbox.username or cfg.mailbox.host} trở lại lúc {local_time(now, cfg)} "
                        f"(gián đoạn từ {local_time(from_iso(failing_since), cfg)}).\n\n"
                        "Thư đến trong thời gian gián đoạn được xử lý ở lượt này; không cần làm gì thêm.\n\n"
                        "(Thư cảnh báo tự động)\n")
                if staff_alert(ctx, f"alert:poll-up:{failing_since}", "Hộp thư đã hoạt động trở lại", body, stamp):
                    notes.append("recovery alert queued")
            store.set_kv("poll.failing_since", "", stamp)
            store.set_kv("alert.poll_down", "", stamp)
        notes += _check_quiet(ctx, now, stamp)
        return notes

    store.set_kv("poll.last_error", error, stamp)
    if not failing_since:
        store.set_kv("poll.failing_since", iso(now), stamp)
        return notes
    since = from_iso(failing_since)
    if now - since >= timedelta(minutes=cfg.alert_after_minutes) and store.get_kv("alert.poll_down") != failing_since:
        last_ok = store.get_kv("poll.last_ok")
        body = (
            f"Hệ thống tiếp nhận thư của {cfg.organisation} không đọc được hộp thư "
            f"{cfg.mailbox.username or ''} ({cfg.mailbox.host}:{cfg.mailbox.port}) từ {local_time(since, cfg)} "
            f"đến nay ({int((now - since).total_seconds() // 60)} phút).\n\n"
            f"Lỗi gần nhất: {error}\n"
            f"Lần đọc thành công gần nhất: {local_time(from_iso(last_ok), cfg) if last_ok else 'chưa có'}\n\n"
            "Đề nghị kiểm tra:\n"
            + (_OAUTH_HINT if cfg.mailbox.auth == "xoauth2" else _PASSWORD_HINT) +
            "  2. IMAP vẫn được bật trong Gmail (Cài đặt → Chuyển tiếp và POP/IMAP).\n"
            "  3. Máy chạy dịch vụ có kết nối Internet, đồng hồ máy đúng giờ.\n"
            "  4. Nhật ký (log) của dịch vụ `intake run`; thử chạy `intake poll` để xem lỗi cụ thể.\n\n"
            "Thư của các đơn vị vẫn nằm trong hộp thư và sẽ được xử lý khi kết nối trở lại. "
            "Hệ thống sẽ gửi thêm một thư khi hoạt động trở lại.\n\n(Thư cảnh báo tự động)\n"
        )
        if staff_alert(ctx, f"alert:poll-down:{failing_since}", "CẢNH BÁO: không đọc được hộp thư", body, stamp):
            notes.append("failure alert queued")
        store.set_kv("alert.poll_down", failing_since, stamp)
    return notes


_PASSWORD_HINT = ("  1. Mật khẩu ứng dụng (App password) của tài khoản Gmail còn hiệu lực; nếu đã đổi mật khẩu "
                  "tài khoản thì phải tạo mật khẩu ứng dụng mới và cập nhật biến môi trường của dịch vụ.\n")
_OAUTH_HINT = ("  1. Quyền truy cập OAuth 2 còn hiệu lực: refresh token có thể đã bị thu hồi (đổi mật khẩu tài khoản, "
               "gỡ quyền ứng dụng, ứng dụng còn ở chế độ Testing quá 7 ngày); lấy lại bằng "
               "`python -m pipeline.oauth` và cập nhật biến môi trường / tệp token của dịch vụ.\n")


def _check_quiet(ctx: Any, now: datetime, stamp: datetime) -> list[str]:
    """No mail for quiet_alert_days while a deadline is near: the mailbox may be filtering, or mail forwarded elsewhere."""
    cfg: Config = ctx.cfg
    store: Store = ctx.store
    notes: list[str] = []
    last_mail = store.last_received_at()
    alerted = store.get_kv("alert.quiet") or ""
    if alerted:
        obligation_id, _, at = alerted.partition("|")
        if last_mail is not None and at and last_mail > from_iso(at):
            body = (f"Hộp thư {cfg.mailbox.username or cfg.mailbox.host} đã nhận thư mới lúc {local_time(last_mail, cfg)}; "
                    "việc tiếp nhận diễn ra bình thường.\n\n(Thư cảnh báo tự động)\n")
            if staff_alert(ctx, f"alert:quiet-over:{obligation_id}", "Hộp thư đã có thư mới trở lại", body, stamp):
                notes.append("quiet-over alert queued")
            store.set_kv("alert.quiet", "", stamp)
        return notes
    if cfg.quiet_alert_days <= 0:
        return notes
    first_ok = store.get_kv("poll.first_ok")
    quiet_since = last_mail or (from_iso(first_ok) if first_ok else None)
    if quiet_since is None or now - quiet_since < timedelta(days=cfg.quiet_alert_days):
        return notes
    today = now.astimezone(cfg.tz).date()
    for ob in ctx.obligations:
        due = ob.due_date
        if due is None or not 0 <= (due - today).days <= cfg.quiet_days_before_deadline:
            continue
        key = f"alert:quiet:{ctx.year}:{ob.id}"
        body = (
            f"Hộp thư {cfg.mailbox.username or cfg.mailbox.host} vẫn đọc được bình thường nhưng không có thư mới "
            f"nào từ {local_time(quiet_since, cfg)} (đã {(now - quiet_since).days} ngày), trong khi hạn nộp "
            f"“{ob.title}” là ngày {due:%d/%m/%Y}.\n\n"
            "Đề nghị kiểm tra:\n"
            f"  1. Thư mục đang đọc ({cfg.mailbox.folder}) có đúng không; Gmail có bộ lọc chuyển thư sang nhãn khác, "
            "vào Spam hoặc tự động lưu trữ (bỏ qua Hộp thư đến) không.\n"
            "  2. Hộp thư có bị đầy dung lượng, hoặc thư có bị chuyển tiếp sang địa chỉ khác không.\n"
            "  3. Các đơn vị có đang gửi vào đúng địa chỉ không (hỏi thử một đơn vị).\n\n"
            "(Thư cảnh báo tự động)\n"
        )
        if staff_alert(ctx, key, f"Không có thư mới {(now - quiet_since).days} ngày trước hạn {due:%d/%m/%Y}", body, stamp):
            notes.append(f"quiet alert queued ({ob.id})")
        store.set_kv("alert.quiet", f"{ctx.year}:{ob.id}|{iso(now)}", stamp)
        break
    return notes
