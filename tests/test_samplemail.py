"""samplemail builders: deterministic, client-faithful bytes that the stdlib and mime.py both read."""
from __future__ import annotations

import email
import email.policy
import re

import pytest

from intake_demo import samplemail as s
from pipeline.mail.mime import parse_message

UNIT = "cd001@truongmnhoasua.edu.vn"
BOX = "ldld.longbien@gmail.com"
FORM = "Biểu đăng ký Dân vận khéo 2022.xlsx"
ATTS = [(FORM, b"PK\x03\x04data", s.XLSX_TYPE)]
SUBJECT = "Đăng ký Dân vận khéo 2022"


def _all() -> dict[str, bytes]:
    inner = s.thunderbird_message(UNIT, "a@gmail.com", SUBJECT, "x", ATTS)
    return {
        "gmail": s.gmail_message(UNIT, BOX, SUBJECT, "Kính gửi", ATTS),
        "outlook": s.outlook_message(UNIT, BOX, SUBJECT, "Kính gửi", ATTS),
        "thunderbird": inner,
        "forwarded": s.forwarded_message("a@gmail.com", BOX, "Fwd: " + SUBJECT, inner),
        "auto_reply": s.auto_reply(UNIT, BOX, SUBJECT),
        "bounce": s.bounce(s.gmail_message(BOX, "sai@example.vn", "Biên nhận", "x"), "sai@example.vn"),
        "signature": s.with_signature_image(UNIT, BOX, SUBJECT, "x", ATTS),
        "spoofed": s.spoofed(UNIT, BOX, SUBJECT, "x", ATTS),
    }


@pytest.mark.parametrize("kind", list(_all()))
def test_builders_are_deterministic_crlf_and_readable_by_stdlib(kind):
    raw = _all()[kind]
    assert raw == _all()[kind]
    assert b"\n" not in raw.replace(b"\r\n", b"")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Message-ID"] and msg["Date"] and msg["From"]
    assert not [d for part in msg.walk() for d in part.defects]


def test_expected_kinds_and_auth():
    parsed = {k: parse_message(v) for k, v in _all().items()}
    assert {k: p.kind for k, p in parsed.items()} == {
        "gmail": "normal", "outlook": "normal", "thunderbird": "normal", "forwarded": "normal",
        "auto_reply": "auto_reply", "bounce": "bounce", "signature": "normal", "spoofed": "normal",
    }
    assert [k for k, p in parsed.items() if p.auth_failure] == ["spoofed"]
    assert {k: [a.filename for a in p.attachments] for k, p in parsed.items()} == {
        "gmail": [FORM], "outlook": [FORM], "thunderbird": [FORM], "forwarded": [FORM],
        "auto_reply": [], "bounce": [], "signature": [FORM], "spoofed": [FORM],
    }


def test_gmail_headers_look_like_gmail():
    raw = s.gmail_message(UNIT, BOX, SUBJECT, "x", ATTS)
    top = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert top.startswith(f"Delivered-To: {BOX}")
    assert re.search(r"Authentication-Results: mx\.google\.com;\s+dkim=pass header\.i=@truongmnhoasua\.edu\.vn", top)
    assert "dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=truongmnhoasua.edu.vn" in top
    assert re.search(r"Message-ID: <CAK[0-9a-f]{40}@mail\.gmail\.com>", top)
    assert 'filename="=?UTF-8?B?' in raw.decode()
    assert b"X-Attachment-Id: f_" in raw


def test_auth_results_none_empty_or_given():
    assert b"Authentication-Results" not in s.gmail_message(UNIT, BOX, "x", "x", auth_results="")
    raw = s.gmail_message(UNIT, BOX, "x", "x", auth_results="mx.google.com; dmarc=fail header.from=x.vn")
    assert b"Authentication-Results: mx.google.com; dmarc=fail header.from=x.vn\r\n" in raw


def test_stdlib_agrees_on_thunderbird_rfc2231_name():
    msg = email.message_from_bytes(s.thunderbird_message(UNIT, BOX, SUBJECT, "x", ATTS), policy=email.policy.default)
    assert [p.get_filename() for p in msg.iter_attachments()] == [FORM]


def test_bounce_carries_original_headers_and_dsn():
    original = s.gmail_message(BOX, "sai@example.vn", "Biên nhận", "x", message_id="<r-9@ldld>")
    raw = s.bounce(original, "sai@example.vn").decode()
    assert "report-type=delivery-status" in raw
    assert "Final-Recipient: rfc822; sai@example.vn\r\nAction: failed" in raw
    assert "Message-ID: <r-9@ldld>" in raw
    assert f"To: {BOX}" in raw  # back to the original sender


def test_spoofed_has_forged_pass_header_below_the_real_one():
    raw = s.spoofed(UNIT, BOX, "x", "x").decode()
    results = re.findall(r"^Authentication-Results: .*?(?=\r\n\S)", raw, re.M | re.S)
    assert len(results) == 2
    assert "dmarc=fail" in results[0] and "dmarc=pass" in results[1]
    assert "dmarc=pass" not in s.spoofed(UNIT, BOX, "x", "x", forged_pass=False).decode()


def test_reply_threading_headers():
    mail = parse_message(s.outlook_message(UNIT, BOX, "RE: Biên nhận", "x", in_reply_to="<receipt@ldld>"))
    assert mail.references == ("<receipt@ldld>",)
    assert mail.subject == "RE: Biên nhận"


def test_signature_png_is_a_png():
    assert s.SIGNATURE_PNG.startswith(b"\x89PNG\r\n\x1a\n") and s.SIGNATURE_PNG.endswith(b"IEND\xaeB`\x82")
