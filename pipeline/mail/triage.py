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


@dataclass(frozen=True)
class _Facts:
    mail: ParsedMail
    unit: Any  # the unit of the sender's address, or None
    assigned: Any  # the unit staff assigned the mail to, or None
    released: bool  # staff let a mail that failed authentication through
    own: bool  # sent by the district's own mailbox
    too_early: str | None  # why the mail is from before the campaigns we collect for, or None


# (applies?, state, reason). Reasons are shown to staff (desk, status), in Vietnamese.
RULES: tuple[tuple[Callable[[_Facts], bool], str, Callable[[_Facts], str | None]], ...] = (
    # History in the mailbox (last year's mail, years of it): never answered, never counted.
    (lambda f: f.too_early is not None, "ignored", lambda f: f.too_early),
    (lambda f: f.assigned is not None, "processed", lambda f: None),  # a person said which unit sent it
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
           own_addresses: Iterable[str] = (), too_early: str | None = None) -> Verdict:
    """The verdict on one parsed mail; ``unit`` is the unit of its sender's address (or None);
    ``too_early``: why it arrived before the first campaign collected, when it did."""
    facts = _Facts(mail=mail, unit=unit, assigned=assigned, released=released,
                   own=bool(mail.from_addr) and mail.from_addr in set(own_addresses), too_early=too_early)
    for applies, state, reason in RULES:
        if applies(facts):
            bounce = (mail.bounced_recipients, mail.bounced_message_id) if mail.kind == "bounce" and state == "ignored" \
                and not facts.own and too_early is None else None
            return Verdict(state=state, reason=reason(facts), unit=assigned if assigned is not None else unit,
                           bounce=bounce)
    raise AssertionError("the last rule always applies")
