"""What becomes of a mail: processed, quarantined or ignored, and why. One table, read top to bottom.

The first rule that applies decides. A mail is *processed* (its attachments read, the sender answered)
only when it comes from a known unit, or a person at the desk said which unit sent it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from pipeline.model import ParsedMail


@dataclass(frozen=True)
class Verdict:
    state: str  # processed | quarantined | ignored
    reason: str | None
    unit: Any  # the unit the mail counts for (processed), else the unit its sender is, or None
    bounce: tuple[tuple[str, ...], str | None] | None = None  # (bounced recipients, bounced Message-ID)
    duplicate_of: int | None = None  # a resent copy: the recorded message it repeats


@dataclass(frozen=True)
class _Facts:
    mail: ParsedMail
    unit: Any  # the unit of the sender's address, or None
    assigned: Any  # the unit staff assigned the mail to, or None
    released: bool  # staff let a mail that failed authentication through
    own: bool  # sent by the district's own mailbox
    too_early: str | None  # why the mail is from before the campaigns we collect for, or None
    copy_of: int | None  # the recorded message this one is a resent copy of (pipeline/mail/copies.py), or None


def _a_copy(f: _Facts) -> bool:
    return f.copy_of is not None


def _copy_reason(f: _Facts) -> str:
    same = "cùng tệp đính kèm" if f.mail.attachments else "cùng nội dung"
    return f"bản gửi lặp lại của thư #{f.copy_of} (cùng Message-ID, {same})"


# (applies?, state, reason). Reasons are shown to staff (desk, status), in Vietnamese.
RULES: tuple[tuple[Callable[[_Facts], bool], str, Callable[[_Facts], str | None]], ...] = (
    # History in the mailbox (last year's mail, years of it): never answered, never counted.
    (lambda f: f.too_early is not None, "ignored", lambda f: f.too_early),
    (lambda f: f.assigned is not None, "processed", lambda f: None),  # a person said which unit sent it
    # A server's retry, a client's second send: recorded (archived, linked to its original), never answered
    # again. Before the sender checks: the original carries the verdict (staff handle one mail, not two).
    (_a_copy, "ignored", _copy_reason),
    (lambda f: f.own, "ignored", lambda f: "thư do chính hộp thư LĐLĐ Quận gửi đi"),
    (lambda f: f.mail.kind == "bounce", "ignored",
     lambda f: f.mail.kind_reason or "thư báo không gửi được (bounce)"),
    (lambda f: f.mail.kind == "auto_reply", "ignored", lambda f: f.mail.kind_reason or "thư trả lời tự động"),
    (lambda f: bool(f.mail.auth_failure) and not f.released, "quarantined",
     lambda f: f"địa chỉ người gửi {f.mail.from_addr} không qua kiểm tra xác thực của máy chủ "
               f"({f.mail.auth_failure}); có thể bị giả mạo"),
    (lambda f: not f.mail.from_addr, "quarantined", lambda f: "thư không có địa chỉ người gửi đọc được"),
    (lambda f: f.unit is None, "quarantined",
     lambda f: f"địa chỉ {f.mail.from_addr} không có trong danh sách đơn vị"),
    (lambda f: True, "processed", lambda f: None),
)


def triage(mail: ParsedMail, unit: Any, *, assigned: Any = None, released: bool = False,
           own_addresses: Iterable[str] = (), too_early: str | None = None, copy_of: int | None = None) -> Verdict:
    """The verdict on one parsed mail; ``unit`` is the unit of its sender's address (or None);
    ``too_early``: why it arrived before the first campaign collected, when it did; ``copy_of``: the recorded
    message it is a resent copy of, when it is one."""
    facts = _Facts(mail=mail, unit=unit, assigned=assigned, released=released,
                   own=bool(mail.from_addr) and mail.from_addr in set(own_addresses), too_early=too_early,
                   copy_of=copy_of)
    for applies, state, reason in RULES:
        if applies(facts):
            copy = applies is _a_copy
            bounce = (mail.bounced_recipients, mail.bounced_message_id) if mail.kind == "bounce" and state == "ignored" \
                and not facts.own and too_early is None and not copy else None  # a copy's bounce is already listed
            return Verdict(state=state, reason=reason(facts), unit=assigned if assigned is not None else unit,
                           bounce=bounce, duplicate_of=copy_of if copy else None)
    raise AssertionError("the last rule always applies")
