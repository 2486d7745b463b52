"""What kind of mail this is, read from its headers and report parts: an auto-reply, a delivery-status
bounce (whom it failed for, which of our mails it answers), and whether the receiving server's
Authentication-Results says the From failed DMARC/SPF/DKIM. Pure functions over a parsed Message.
"""
from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterable
from email.message import Message

from pipeline import textnorm
from pipeline.mail.headers import (
    content_type,
    first_header,
    join_continuations,
    message_ids,
    param,
    raw_headers,
    split_params,
    unescape_8bit,
    walk_parts,
)

__all__ = ["auto_reply_reason", "bounce_info", "auth_failure"]

# --------------------------------------------------------------------------------------------
# Auto-replies
# --------------------------------------------------------------------------------------------

_AUTO_SUBJECTS = tuple(
    textnorm.fold(s)
    for s in (
        "Trả lời tự động", "Tự động trả lời", "Thư trả lời tự động", "Automatic reply",
        "Auto:", "Auto reply", "Auto-reply", "Autoreply", "Out of Office", "Out of the office",
        "Abwesenheitsnotiz", "Réponse automatique",
    )
)


def auto_reply_reason(msg: Message, subject: str) -> str | None:
    """Why this is an auto-reply (in Vietnamese), or None when it is not one."""
    auto = first_header(msg, "Auto-Submitted")
    if auto is not None and auto.strip().lower().split(";")[0].strip() not in ("no", ""):
        return f"Thư trả lời tự động (Auto-Submitted: {auto.strip()})"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if first_header(msg, name) is not None:
            return f"Thư trả lời tự động (có tiêu đề {name})"
    precedence = (first_header(msg, "Precedence") or "").strip().lower()
    if precedence == "auto_reply":
        return "Thư trả lời tự động (Precedence: auto_reply)"
    folded = textnorm.fold(subject)
    for prefix in _AUTO_SUBJECTS:
        if folded.startswith(prefix):
            return f"Thư trả lời tự động (tiêu đề bắt đầu bằng «{subject[: len(prefix) + 2].strip()}»)"
    return None


# --------------------------------------------------------------------------------------------
# Bounces (RFC 3464 delivery-status reports)
# --------------------------------------------------------------------------------------------


def _dsn_fields(part: Message) -> list[dict[str, str]]:
    """The field groups of a message/delivery-status part, as lower-case name → value."""
    groups: list[dict[str, str]] = []
    payload = part.get_payload()
    if isinstance(payload, list):
        for block in payload:
            if isinstance(block, Message):
                groups.append({k.lower(): unescape_8bit(str(v)) for k, v in block.raw_items()})
        if groups:
            return groups
    text = payload if isinstance(payload, str) else ""
    if not isinstance(payload, str):
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else ""
    for block in re.split(r"\r?\n\s*\r?\n", text):
        fields: dict[str, str] = {}
        for line in join_continuations(block).splitlines():
            key, sep, val = line.partition(":")
            if sep:
                fields[key.strip().lower()] = val.strip()
        if fields:
            groups.append(fields)
    return groups


def bounce_info(msg: Message, from_addr: str | None) -> tuple[str | None, tuple[str, ...], str | None]:
    """(why it is a bounce, the recipients it failed for, the Message-ID of the mail it returns);
    (None, (), None) when it is not a delivery-status bounce."""
    ctype = (first_header(msg, "Content-Type") or "").lower()
    main, params = split_params(ctype)
    report_type = (param(params, "report-type") or "").lower()
    is_report = main == "multipart/report" and report_type == "delivery-status"
    dsn_parts = [p for p in walk_parts(msg) if content_type(p) == "message/delivery-status"]
    local = (from_addr or "").split("@")[0]
    from_daemon = local in ("mailer-daemon", "postmaster")
    if not is_report and not (from_daemon and dsn_parts):
        return None, (), None

    recipients: list[str] = []
    for part in dsn_parts:
        for fields in _dsn_fields(part):
            action = fields.get("action", "").lower()
            recipient = fields.get("final-recipient") or fields.get("original-recipient")
            if recipient and action.startswith("failed"):
                addr = recipient.split(";", 1)[-1].strip().strip("<>").lower()
                if addr and addr not in recipients:
                    recipients.append(addr)

    original_id: str | None = None
    for part in walk_parts(msg):
        ct = content_type(part)
        try:
            if ct == "message/rfc822":
                inner = part.get_payload()
                inner_msg = inner[0] if isinstance(inner, list) and inner else None
                if isinstance(inner_msg, Message):
                    ids = message_ids(first_header(inner_msg, "Message-ID"))
                    original_id = ids[0] if ids else original_id
            elif ct == "text/rfc822-headers":
                raw = part.get_payload(decode=True) or b""
                headers = email.message_from_bytes(raw, policy=email.policy.compat32)
                ids = message_ids(first_header(headers, "Message-ID"))
                original_id = ids[0] if ids else original_id
        except Exception:  # noqa: BLE001
            continue
        if original_id:
            break
    reason = "Thư báo không gửi được (delivery-status)"
    if recipients:
        reason += " tới " + ", ".join(recipients)
    return reason, tuple(recipients), original_id


# --------------------------------------------------------------------------------------------
# Authentication-Results (RFC 8601)
# --------------------------------------------------------------------------------------------


def _strip_comments(text: str) -> str:
    previous = None
    while previous != text:
        previous = text
        text = re.sub(r"\([^()]*\)", " ", text)
    return text


def _auth_results(value: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]]:
    """(authserv-id, [(method, result, {property: value})]) of one Authentication-Results header."""
    text = _strip_comments(unescape_8bit(value))
    pieces = [p.strip() for p in text.split(";")]
    authserv = pieces[0].split()[0].lower() if pieces and pieces[0].split() else ""
    results: list[tuple[str, str, dict[str, str]]] = []
    for piece in pieces[1:]:
        tokens = piece.split()
        if not tokens or "=" not in tokens[0]:
            continue
        method, _, result = tokens[0].partition("=")
        props: dict[str, str] = {}
        for tok in tokens[1:]:
            key, sep, val = tok.partition("=")
            if sep:
                props[key.lower()] = val.strip('"').lower()
        results.append((method.lower().split("/")[0], result.lower(), props))
    return authserv, results


def _aligned(domain: str, from_domain: str) -> bool:
    domain = domain.lstrip("@").split("@")[-1]
    return bool(domain) and (from_domain == domain or from_domain.endswith("." + domain))


def auth_failure(msg: Message, from_addr: str | None, trusted: Iterable[str]) -> str | None:
    """What failed (e.g. "dmarc=fail (header.from=x.vn)"), or None. Only the receiving server's word
    counts: the topmost header, or every header from a ``trusted`` authserv-id when some are named
    (anything lower down may have been written by the sender)."""
    headers = raw_headers(msg, "Authentication-Results")
    if not headers:
        return None
    trusted_ids = {t.strip().lower() for t in trusted if t.strip()}
    parsed = [_auth_results(h) for h in headers]
    considered = [r for a, r in parsed if a in trusted_ids] if trusted_ids else [parsed[0][1]]
    results = [item for group in considered for item in group]
    from_domain = (from_addr or "").rpartition("@")[2]

    def describe(method: str, result: str, props: dict[str, str], keys: tuple[str, ...]) -> str:
        for key in keys:
            if props.get(key):
                return f"{method}={result} ({key}={props[key]})"
        return f"{method}={result}" + (f" (header.from={from_domain})" if from_domain else "")

    for method, result, props in results:
        if method == "dmarc" and result == "fail":
            return describe(method, result, props, ("header.from",))
    dmarc_pass = any(m == "dmarc" and r == "pass" for m, r, _ in results)
    for method, result, props in results:
        if method == "spf" and result == "fail":
            return describe(method, result, props, ("smtp.mailfrom", "smtp.helo"))
    dkim_pass = any(
        m == "dkim" and r == "pass" and _aligned(p.get("header.d") or p.get("header.i", ""), from_domain)
        for m, r, p in results
    )
    if not dkim_pass and not dmarc_pass:
        for method, result, props in results:
            if method == "dkim" and result == "fail":
                return describe(method, result, props, ("header.d", "header.i"))
    return None
