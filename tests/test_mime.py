"""mime.parse_message and sanitise_filename, on messages built like real clients and on real samples."""
from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

import pytest

from intake_demo import samplemail as s
from pipeline.errors import MessageParseError
from pipeline.mail.mime import decode_header_text, header_message_id, is_own_address, parse_message, sanitise_filename

UNIT = "cd001@truongmnhoasua.edu.vn"
BOX = "ldld.longbien@gmail.com"
XLSX = b"PK\x03\x04 pretend workbook"
PHOTO = b"\xff\xd8\xff\xe0 pretend photo of a signed form"
FORM = "Biểu đăng ký Dân vận khéo 2022.xlsx"
SUBJECT = "Đăng ký mô hình Dân vận khéo năm 2022 – CĐCS Trường MN Hoa Sữa"
PEER = Path(__file__).resolve().parents[2] / "shared" / "peer-mail" / "mail-mime-parser"


def names(mail):
    return [(a.filename, a.part) for a in mail.attachments]


# --------------------------------------------------------------------------- builders → parser


@pytest.mark.parametrize("builder", [s.gmail_message, s.outlook_message, s.thunderbird_message])
def test_client_messages_decode_vietnamese_names(builder):
    raw = builder(UNIT, BOX, SUBJECT, "Kính gửi LĐLĐ quận.", [(FORM, XLSX, s.XLSX_TYPE), ("ảnh.jpg", PHOTO, "image/jpeg")],
                  sender_name="Công đoàn Trường MN Hoa Sữa")
    mail = parse_message(raw)
    assert mail.from_addr == UNIT
    assert mail.from_name == "Công đoàn Trường MN Hoa Sữa"
    assert mail.subject == SUBJECT
    assert mail.kind == "normal" and mail.kind_reason is None
    assert mail.auth_failure is None
    assert names(mail) == [(FORM, "2"), ("ảnh.jpg", "3")]
    form = mail.attachments[0]
    assert form.data == XLSX
    assert form.sha256 == hashlib.sha256(XLSX).hexdigest()
    assert form.content_type == s.XLSX_TYPE
    assert form.original_filename == FORM
    assert mail.message_id and mail.message_id.startswith("<")
    assert mail.defects == ()


def test_outlook_uses_encoded_words_inside_quotes_and_thread_index():
    raw = s.outlook_message(UNIT, BOX, SUBJECT, "x", [(FORM, XLSX, s.XLSX_TYPE)])
    assert b'filename="=?utf-8?B?' in raw and b"Thread-Index:" in raw and b"X-MS-Has-Attach: yes" in raw
    assert names(parse_message(raw)) == [(FORM, "2")]


def test_thunderbird_uses_rfc2231_continuations():
    raw = s.thunderbird_message(UNIT, BOX, SUBJECT, "x", [(FORM, XLSX, s.XLSX_TYPE)])
    assert b"filename*0*=utf-8''" in raw and b"filename*1*=" in raw
    assert names(parse_message(raw)) == [(FORM, "2")]


def test_rfc2231_continuation_with_charset_and_plain_sections():
    raw = (
        "From: a@b.vn\r\nSubject: t\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
        "--b\r\nContent-Type: application/octet-stream\r\n"
        "Content-Disposition: attachment;\r\n filename*0*=windows-1258''Bi%EAu;\r\n filename*1=\" m\xe2u\";\r\n"
        " filename*2*=%2Exls\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n"
    ).encode("latin-1")
    mail = parse_message(raw)
    # section 1 is not encoded: its bytes are taken as they are and the whole decoded as cp1258
    assert [a.data for a in mail.attachments] == [b"\x00\x01\x02"]
    assert mail.attachments[0].filename.endswith(".xls")
    assert mail.attachments[0].filename.startswith("Biêu")


def test_encoded_word_in_name_only_and_raw_utf8_filename():
    raw = (
        "From: =?UTF-8?B?Q8O0bmcgxJFvw6Bu?= <CD002@Example.VN>\r\nSubject: =?UTF-8?Q?B=C3=A1o_c=C3=A1o?= qu\u00fd I\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbody\r\n"
        '--b\r\nContent-Type: application/pdf; name="=?UTF-8?Q?B=C3=A1o_c=C3=A1o_qu=C3=BD_I.pdf?="\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n"
        '--b\r\nContent-Type: application/vnd.ms-excel\r\nContent-Disposition: attachment; filename="Tổng hợp.xls"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n"
    ).encode("utf-8")
    mail = parse_message(raw)
    assert mail.from_addr == "cd002@example.vn"
    assert mail.from_name == "Công đoàn"
    assert mail.subject == "Báo cáo quý I"
    assert names(mail) == [("Báo cáo quý I.pdf", "2"), ("Tổng hợp.xls", "3")]
    assert mail.attachments[0].data == b"%PDF-"


def test_signature_image_skipped_but_photo_attachment_kept():
    raw = s.with_signature_image(UNIT, BOX, SUBJECT, "x", [("ảnh biểu đã ký.jpg", PHOTO, "image/jpeg"),
                                                          ("logo.png", s.SIGNATURE_PNG, "image/png")])
    mail = parse_message(raw)
    # Gmail gives every attachment a Content-ID too: disposition attachment is what keeps them.
    assert names(mail) == [("ảnh biểu đã ký.jpg", "2"), ("logo.png", "3")]
    assert mail.skipped_parts == ("1.2: ảnh nhúng image/png logo.png",)


def test_forwarded_attachments_found():
    inner = s.thunderbird_message("cd002@example.vn", "chutich@gmail.com", "Báo cáo quý I", "x",
                                  [(FORM, XLSX, s.XLSX_TYPE)])
    outer = s.forwarded_message("chutich@gmail.com", BOX, "Fwd: Báo cáo quý I", inner)
    mail = parse_message(outer)
    assert mail.from_addr == "chutich@gmail.com"
    assert names(mail) == [(FORM, "2.2")]
    assert mail.attachments[0].data == XLSX


def test_forward_of_a_forward_and_single_part_inner():
    inner = s.gmail_message("cd003@example.vn", "a@gmail.com", "Ảnh", "x", [("ảnh.jpg", PHOTO, "image/jpeg")])
    twice = s.forwarded_message("b@gmail.com", BOX, "Fwd: Fwd", s.forwarded_message("a@gmail.com", "b@gmail.com", "Fwd", inner))
    assert names(parse_message(twice)) == [("ảnh.jpg", "2.2.2")]
    plain_inner = b"From: x@y.vn\r\nSubject: s\r\nContent-Type: application/pdf; name=a.pdf\r\n\r\n%PDF"
    assert names(parse_message(s.forwarded_message("a@gmail.com", BOX, "Fwd", plain_inner))) == [("a.pdf", "2.1")]


@pytest.mark.parametrize(
    ("given", "expected"),
    [("../../etc/passwd", "passwd"), ("..\\..\\x.xlsx", "x.xlsx"), ("/abs/x", "x"),
     ("C:\\TEMP\\Biểu mẫu.xlsx", "Biểu mẫu.xlsx"), (".htaccess", "htaccess")],
)
def test_traversal_filenames_in_mail_are_sanitised(given, expected):
    raw = s.gmail_message(UNIT, BOX, "x", "x", [(given, XLSX, "application/octet-stream")], filename_style="raw")
    mail = parse_message(raw)
    assert [a.filename for a in mail.attachments] == [expected]
    assert mail.attachments[0].original_filename == given


def test_traversal_in_rfc2047_and_rfc2231_names():
    for builder in (s.gmail_message, s.thunderbird_message, s.outlook_message):
        raw = builder(UNIT, BOX, "x", "x", [("../../Báo cáo/../x.xlsx", XLSX, s.XLSX_TYPE)])
        assert [a.filename for a in parse_message(raw).attachments] == ["x.xlsx"]


def test_attachment_without_name_gets_generated_name_and_body_is_not_attachment():
    raw = (
        b'From: a@b.vn\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>body</p>\r\n"
        b"--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nnotes\r\n--b--\r\n"
    )
    mail = parse_message(raw)
    assert names(mail) == [("attachment-2.pdf", "2"), ("attachment-3.txt", "3")]
    assert mail.attachments[0].data == b"%PDF-"  # bad padding decoded, not a crash
    assert mail.attachments[0].original_filename is None


def test_uuencoded_body_and_winmail_dat_kept():
    png = s.SIGNATURE_PNG
    import binascii

    lines = b"".join(binascii.b2a_uu(png[i : i + 45]) for i in range(0, len(png), 45))
    raw = b"From: a@b.vn\r\nSubject: uu\r\n\r\nSee file.\r\n\r\nbegin 644 bieu mau.png\r\n" + lines.replace(b"\n", b"\r\n") + b"`\r\nend\r\n"
    mail = parse_message(raw)
    assert names(mail) == [("bieu mau.png", "1#uu1")]
    assert mail.attachments[0].data == png
    tnef = s.outlook_message(UNIT, BOX, "x", "x", [("winmail.dat", b"\x78\x9f\x3e\x22rest", "application/ms-tnef")])
    assert [(a.filename, a.content_type) for a in parse_message(tnef).attachments] == [("winmail.dat", "application/ms-tnef")]


# --------------------------------------------------------------------------- kinds


def test_auto_reply_builder():
    mail = parse_message(s.auto_reply(UNIT, BOX, "Nhắc nộp biểu đăng ký"))
    assert mail.kind == "auto_reply"
    assert mail.subject == "Trả lời tự động: Nhắc nộp biểu đăng ký"
    assert "Auto-Submitted" in (mail.kind_reason or "")


@pytest.mark.parametrize(
    ("extra", "subject", "kind"),
    [
        ([], "Trả lời tự động: Nhắc nộp biểu", "auto_reply"),
        ([], "TRA LOI TU DONG: nhac", "auto_reply"),
        ([], "Automatic reply: Biểu đăng ký", "auto_reply"),
        ([], "Out of Office: x", "auto_reply"),
        ([], "Auto: x", "auto_reply"),
        (["Precedence: auto_reply"], "Re: x", "auto_reply"),
        (["X-Autorespond: yes"], "Re: x", "auto_reply"),
        (["Auto-Submitted: no"], "Re: Biểu đăng ký", "normal"),
        (["Precedence: bulk"], "Trả lời: biểu tự động hoá", "normal"),
    ],
)
def test_auto_reply_detection(extra, subject, kind):
    mail = parse_message(s.gmail_message(UNIT, BOX, subject, "x", extra_headers=extra))
    assert mail.kind == kind
    assert (mail.kind_reason is None) == (kind == "normal")


def test_bounce_builder():
    original = s.gmail_message(BOX, "sai@example.vn", "Biên nhận", "x", message_id="<receipt-1@ldld.longbien>")
    mail = parse_message(s.bounce(original, "sai@example.vn"))
    assert mail.kind == "bounce"
    assert mail.from_addr == "mailer-daemon@googlemail.com"
    assert mail.bounced_recipients == ("sai@example.vn",)
    assert mail.bounced_message_id == "<receipt-1@ldld.longbien>"
    assert mail.attachments == ()
    assert "sai@example.vn" in (mail.kind_reason or "")


def test_own_address_helper_does_not_change_kind():
    mail = parse_message(s.gmail_message(BOX, UNIT, "Biên nhận", "x"), own_addresses=[BOX.upper()])
    assert mail.kind == "normal"
    assert is_own_address(mail.from_addr, [BOX.upper()])
    assert not is_own_address(UNIT, [BOX])


# --------------------------------------------------------------------------- authentication


def test_spoof_detected_from_top_header_despite_forged_pass_below():
    mail = parse_message(s.spoofed(UNIT, BOX, SUBJECT, "x", [(FORM, XLSX, s.XLSX_TYPE)]))
    assert mail.auth_failure == "dmarc=fail (header.from=truongmnhoasua.edu.vn)"
    assert names(mail) == [(FORM, "2")]


def test_forged_lower_fail_header_does_not_matter():
    forged = ["Authentication-Results: mx.google.com; dmarc=fail header.from=truongmnhoasua.edu.vn; spf=fail"]
    raw = s.gmail_message(UNIT, BOX, "x", "x", extra_headers=forged)
    assert parse_message(raw).auth_failure is None
    # ...but when the caller names trusted authserv-ids, every header from that id counts
    assert parse_message(raw, trusted_authserv_ids=["mx.google.com"]).auth_failure is not None
    assert parse_message(raw, trusted_authserv_ids=["mx.other.net"]).auth_failure is None


def test_forged_top_header_with_untrusted_id_ignored_when_ids_given():
    raw = s.spoofed(UNIT, BOX, "x", "x").replace(
        b"Delivered-To:", b"Authentication-Results: evil.example; dmarc=pass header.from=truongmnhoasua.edu.vn\r\nDelivered-To:", 1
    )
    assert parse_message(raw).auth_failure is None  # no ids: only the topmost is read
    assert parse_message(raw, trusted_authserv_ids=["mx.google.com"]).auth_failure == (
        "dmarc=fail (header.from=truongmnhoasua.edu.vn)"
    )


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ("mx.google.com; spf=softfail smtp.mailfrom=a@b.vn; dkim=none", None),
        ("mx.google.com; spf=fail smtp.mailfrom=a@b.vn", "spf=fail (smtp.mailfrom=a@b.vn)"),
        ("mx.google.com; dkim=fail header.d=list.org; dkim=pass header.d=truongmnhoasua.edu.vn", None),
        ("mx.google.com; dkim=fail (bad sig) header.i=@truongmnhoasua.edu.vn", "dkim=fail (header.i=@truongmnhoasua.edu.vn)"),
        ("mx.google.com; dkim=pass header.d=other.org; dkim=fail header.d=truongmnhoasua.edu.vn",
         "dkim=fail (header.d=truongmnhoasua.edu.vn)"),
        ("mx.google.com; dmarc=pass (p=NONE) header.from=truongmnhoasua.edu.vn; spf=pass", None),
        ("mx.google.com; dmarc=fail (p=REJECT; comment with dmarc=pass) header.from=truongmnhoasua.edu.vn",
         "dmarc=fail (header.from=truongmnhoasua.edu.vn)"),
        ("", None),
    ],
)
def test_authentication_results_reading(results, expected):
    raw = s.gmail_message(UNIT, BOX, "x", "x", auth_results=results)
    assert parse_message(raw).auth_failure == expected


# --------------------------------------------------------------------------- robustness


def test_empty_or_headerless_input_raises():
    for raw in (b"", b"   \r\n", b"just some text without any header line"):
        with pytest.raises(MessageParseError):
            parse_message(raw)


def test_broken_headers_never_raise():
    raw = (
        b"From: \"Unclosed <a@b.vn>, second@c.vn\r\n"
        b"Subject: =?x-unknown-charset?Q?B=E1o_c=E1o?= \xe1\xba\xa1 =?utf-8?B?bad*base64?=\r\n"
        b"Message-ID: not-angled@id\r\nIn-Reply-To: <r1@x>\r\nReferences: <r0@x> <r1@x>\r\n"
        b"Content-Type: multipart/mixed; boundary=\"b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n"
    )
    mail = parse_message(raw)
    assert mail.from_addr == "a@b.vn"
    assert "ạ" in mail.subject and mail.subject.startswith("Báo cáo")
    assert mail.references == ("<r1@x>", "<r0@x>")
    assert mail.message_id == "not-angled@id"


def test_missing_from_and_multiple_from():
    assert parse_message(b"Subject: hi\r\n\r\nbody").from_addr is None
    mail = parse_message(b"From: First <ONE@a.vn>, two@b.vn\r\nSubject: hi\r\n\r\nbody")
    assert (mail.from_addr, mail.from_name) == ("one@a.vn", "First")


def test_decode_header_text_joins_split_multibyte_words():
    # Outlook splits a Vietnamese letter across two encoded words.
    word = "ệ".encode()
    text = f"=?utf-8?Q?Bi={word[0]:02X}?= =?utf-8?Q?={word[1]:02X}={word[2]:02X}u?="
    assert decode_header_text(text) == "Biệu"


# --------------------------------------------------------------------------- sanitise_filename


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\x.xlsx", "x.xlsx"),
        ("/abs/x", "x"),
        ("a..b.xlsx", "a.b.xlsx"),
        ("...", "attachment"),
        ("", "attachment"),
        ("CON.xlsx", "_CON.xlsx"),
        ("nul", "_nul"),
        ("tab\there\x00.xlsx", "tab here.xlsx"),
        ("gpj\u202e.exe", "gpj.exe"),
        ('a<b>:c"d|e?f*.pdf', "a_b__c_d_e_f_.pdf"),
        ("Bie\u0302\u0309u.xlsx", "Biểu.xlsx"),  # NFD from macOS → NFC
        ("  spaced  name .docx ", "spaced name.docx"),
    ],
)
def test_sanitise_filename(given, expected):
    assert sanitise_filename(given) == expected


def test_sanitise_filename_fallback_and_length():
    assert sanitise_filename("", "attachment-2.pdf") == "attachment-2.pdf"
    assert sanitise_filename("../", "../x.pdf") == "x.pdf"
    long = "Biểu đăng ký " * 30 + ".xlsx"
    out = sanitise_filename(long)
    assert out.endswith(".xlsx") and len(out) <= 150 and len(out.encode()) <= 240
    assert out.startswith("Biểu đăng ký")


# --------------------------------------------------------------------------- real samples

needs_peer = pytest.mark.usefixtures("peer_mail")  # absent: a failure naming the folder, never a skip


def _samples() -> list[Path]:
    return sorted(PEER.glob("*.txt")) if PEER.is_dir() else [PEER]  # absent: one case, failed by peer_mail


@needs_peer
@pytest.mark.parametrize("path", _samples(), ids=lambda p: p.name)
def test_every_peer_sample_parses(path):
    mail = parse_message(path.read_bytes())
    assert mail.from_addr and "@" in mail.from_addr
    for att in mail.attachments:
        assert att.filename and att.filename == sanitise_filename(att.filename)
        assert "/" not in att.filename and "\\" not in att.filename
        assert att.sha256 == hashlib.sha256(att.data).hexdigest()
        assert att.part


def _peer(name: str):
    return parse_message((PEER / name).read_bytes())


BLUE = "blueball.png"


@needs_peer
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("m0011.txt", [("blueball.png", "2"), ("greenball.png", "3"), ("redball.png", "4")]),
        ("m0021.txt", [("blueball.png", "2"), ("greenball.png", "3"), ("redball.png", "4")]),  # boundary folded in quotes
        ("m0018.txt", [("blueball.png", "1#uu1"), ("greenball.png", "1#uu2"), ("redball.png", "1#uu3")]),  # uuencode in body
        ("m1014.txt", [("redball.png", "2"), ("greenball.png", "3"), ("blueball.png", "4")]),  # x-uuencode parts
        ("m1015.txt", [("HasenundFrösche.txt", "2")]),  # RFC 2047 inside quotes
        ("m3004.txt", [("HasenundFrösche.txt", "2")]),  # RFC 2231 with iso-8859-1
        ("m0024.txt", [("Biodiversite de semaine en semaine.doc", "2")]),
        ("m4006.txt", [("winmail.dat", "1")]),  # TNEF kept as it is
        ("m2005.txt", [("blueball.png", "2"), ("greenball.png", "3")]),  # inline cid images skipped
        ("m1005.txt", [("redball.png", "2"), ("greenball.png", "3")]),
        ("m4002.txt", [("blueball.png", "1.2"), ("greenball.png", "1.3"), ("redball.png", "1.4")]),  # signed
        ("m0016.txt", []),
        ("m4007.txt", []),
    ],
)
def test_peer_sample_attachments(name, expected):
    assert names(_peer(name)) == expected


@needs_peer
def test_peer_same_image_decodes_identically_across_encodings():
    def sha(mail, filename):
        return next(a.sha256 for a in mail.attachments if a.filename == filename)

    base64_blue = sha(_peer("m0011.txt"), BLUE)
    assert sha(_peer("m0018.txt"), BLUE) == base64_blue  # uuencode in the body
    assert sha(_peer("m1014.txt"), BLUE) == base64_blue  # Content-Transfer-Encoding: x-uuencode
    assert sha(_peer("m3001.txt"), BLUE) == base64_blue  # Pine, application/octet-stream
    assert sha(_peer("m3007.txt"), BLUE) == base64_blue
    assert _peer("m0011.txt").attachments[0].data.startswith(b"\x89PNG\r\n\x1a\n")


@needs_peer
def test_peer_inline_signature_images_listed_as_skipped():
    mail = _peer("m1005.txt")
    assert [p.split(":")[0] for p in mail.skipped_parts] == ["1.2.2", "1.2.3"]


@needs_peer
def test_peer_subjects_and_senders():
    assert _peer("m0004.txt").subject == "Die Hasen und die Frösche (Microsoft Outlook 00)"
    assert _peer("m0006.txt").subject == "Die Hasen und die Frösche (Microsoft Outlook 00)"  # utf-7 word
    assert _peer("m1001.txt").subject == "Die Hasen und die Frösche (Netscape Communicator 4.7)"
    assert _peer("github-102-01.txt").subject == "Die Hasen und die Frösche (Microsoft Outlook 00)"  # raw latin-1
    assert _peer("m0010.txt").from_addr == "doug@example.com"  # a second From in the body is ignored
    assert _peer("m3001.txt").from_addr == "doug@penguin.example.com"


def test_large_inline_cid_image_is_a_photo_not_a_signature():
    # iPhone Mail marks every photo inline with a Content-ID; a logo is a few KB, a photo is not.
    photo = b"\xff\xd8\xff\xe0" + bytes(150_000)
    import base64

    body = base64.encodebytes(photo).replace(b"\n", b"\r\n")
    raw = (
        b'From: a@b.vn\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"
        b"--b\r\nContent-Type: image/jpeg; name=IMG_0001.jpg\r\nContent-Disposition: inline; filename=IMG_0001.jpg\r\n"
        b"Content-Id: <A1B2@apple>\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body +
        b"--b\r\nContent-Type: image/png; name=logo.png\r\nContent-Disposition: inline; filename=logo.png\r\n"
        b"Content-Id: <logo@apple>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b--\r\n"
    )
    mail = parse_message(raw)
    assert names(mail) == [("IMG_0001.jpg", "2")]
    assert mail.attachments[0].data == photo
    assert mail.skipped_parts == ("3: ảnh nhúng image/png logo.png",)


def _tnef_attr(level: int, attr: int, value: bytes) -> bytes:
    import struct

    return struct.pack("<BII", level, attr, len(value)) + value + struct.pack("<H", sum(value) & 0xFFFF)


def test_winmail_dat_kept_and_its_files_extracted():
    tnef = (
        b"\x78\x9f\x3e\x22\x01\x00"
        + _tnef_attr(1, 0x00089006, b"\x00\x00\x00\x00")
        + _tnef_attr(2, 0x00069002, b"\x01\x00" * 7)
        + _tnef_attr(2, 0x00018010, b"BIEUDK.XLS\x00")
        + _tnef_attr(2, 0x0006800F, b"xls bytes")
        + _tnef_attr(2, 0x00069002, b"\x01\x00" * 7)
        + _tnef_attr(2, 0x00018010, b"../../evil.pdf\x00")
        + _tnef_attr(2, 0x0006800F, b"%PDF-1.4")
    )
    raw = s.outlook_message(UNIT, BOX, "x", "x", [("winmail.dat", tnef, "application/ms-tnef")])
    mail = parse_message(raw)
    assert [(a.filename, a.part, a.data) for a in mail.attachments] == [
        ("winmail.dat", "2", tnef),
        ("BIEUDK.XLS", "2#tnef1", b"xls bytes"),
        ("evil.pdf", "2#tnef2", b"%PDF-1.4"),
    ]
    # truncated TNEF never raises
    assert [a.filename for a in parse_message(s.outlook_message(UNIT, BOX, "x", "x", [("winmail.dat", tnef[:40], "application/ms-tnef")])).attachments][0] == "winmail.dat"


# --------------------------------------------------------------------------- malformed structure
# Mail that strays from the MIME grammar still yields its attachments, or says what is wrong with it.


def _malformed_params() -> list[tuple[str, bytes]]:
    raw = s.outlook_message(UNIT, BOX, SUBJECT, "Kính gửi.", [(FORM, XLSX, s.XLSX_TYPE), ("ảnh chụp.jpg", PHOTO, "image/jpeg")])
    text = raw.decode("utf-8", errors="surrogateescape")
    variants = {
        "boundary-trailing-quote": re.sub(r'boundary="([^"]*)"', r'boundary=\1"', text, count=1),
        "boundary-unterminated-quote": re.sub(r'boundary="([^"]*)"', r'boundary="\1', text, count=1),
        "boundary-rfc2231": text.replace("boundary=", "boundary*=", 1),
        "boundary-comment": re.sub(r'(boundary="[^"]*")', r"\1 (comment)", text, count=1),
        "boundary-encoded-word": re.sub(r'boundary="([^"]*)"', r'boundary="=?us-ascii?Q?\1?="', text, count=1),
        "charset-encoded-word": text.replace('charset="UTF-8"', 'charset="=?utf-8?Q?UTF-8?="', 1),
        "charset-8bit": text.replace('charset="UTF-8"', 'charset="ut\udce1f-8"', 1),
    }
    assert all(v != text for v in variants.values())
    return [(k, v.encode("utf-8", errors="surrogateescape")) for k, v in variants.items()]


@pytest.mark.parametrize(("name", "raw"), _malformed_params(), ids=lambda v: v if isinstance(v, str) else "")
def test_malformed_content_type_parameters_still_split_the_parts(name, raw):
    mail = parse_message(raw)
    assert [(a.filename, a.part, a.data) for a in mail.attachments] == [(FORM, "2", XLSX), ("ảnh chụp.jpg", "3", PHOTO)], name
    assert mail.subject == SUBJECT


def _mp(body: str, ctype: str = 'multipart/mixed; boundary="b"', extra: str = "") -> bytes:
    return f"From: a@b.vn\r\nSubject: x\r\n{extra}Content-Type: {ctype}\r\n\r\n{body}".encode()


_PDF = 'Content-Type: application/pdf; name="bieu.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n'
_NESTED = '--b\r\nContent-Type: multipart/alternative; boundary="c"\r\n\r\n'
_INNER = 'From: c@d.vn\r\nContent-Type: multipart/mixed; boundary="i"\r\n\r\n'


@pytest.mark.parametrize(
    ("raw", "part", "defects"),
    [
        (_mp(f"preamble line\r\n--b\r\n{_PDF}--b--\r\nepilogue\r\n"), "1", ()),
        (_mp(f"--b\r\n{_PDF}--b--"), "1", ()),  # no newline after the close delimiter
        (_mp(f"--b \t\r\n{_PDF}--b-- \r\n"), "1", ()),  # blanks after delimiters
        (_mp(f"--b\n{_PDF}--b--\n").replace(b"\r\n", b"\n"), "1", ()),
        (_mp(f"--b\r\n{_PDF}--b--\r\n").replace(b"\r\n", b"\r"), "1", ()),
        (_mp(f"pre\n--b\r{_PDF}--b--\n"), "1", ()),  # mixed newlines
        (_mp(f"--b\r\n{_PDF}--bx not a delimiter\r\n-- b\r\n--b--\r\n"), "1", ()),
        (_mp(f"--b\r\n--b\r\n{_PDF}--b--\r\n"), "1", ()),  # an empty part before it
        (_mp(f"--b\r\n{_PDF}"), "1", ("CloseBoundaryNotFoundDefect",)),
        (_mp(f"{_NESTED}--c\r\n{_PDF}--b--\r\n"), "1.1", ("CloseBoundaryNotFoundDefect",)),
        (_mp(f"--b\r\nContent-Type: message/rfc822\r\n\r\n{_INNER}--i\r\n{_PDF}--i--\r\nin-epi\r\n--b--\r\n"), "1.1", ()),
        (_mp(f"--b\r\n\r\nFrom: c@d.vn\r\n\r\ndigested\r\n--b\r\n{_PDF}--b--\r\n", ctype='multipart/digest; boundary="b"'),
         "2", ()),
        (_mp(f"--b\r\n{_PDF}--b--\r\n", extra="Content-Transfer-Encoding: base64\r\n"), "1",
         ("InvalidMultipartContentTransferEncodingDefect",)),
        (b"From someone Mon Jan 1 00:00:00 2022\r\n" + _mp(f"--b\r\n{_PDF}--b--\r\n"), "1", ()),  # mbox From line
        (b" folded first\r\n" + _mp(f"--b\r\n{_PDF}--b--\r\n"), "1",
         ("FirstHeaderLineIsContinuationDefect:  folded first\r\n",)),
        (_mp(f"--a.b*c+(d)\r\n{_PDF}--a.b*c+(d)--\r\n", ctype='multipart/mixed; boundary="a.b*c+(d)"'), "1", ()),
    ],
)
def test_multipart_grammar_corners_keep_the_attachment(raw, part, defects):
    mail = parse_message(raw)
    assert mail.from_addr == "a@b.vn"
    assert [(a.filename, a.part, a.data) for a in mail.attachments] == [("bieu.pdf", part, b"%PDF-")]
    assert mail.defects == defects


@pytest.mark.parametrize(
    ("raw", "defects"),
    [
        (_mp(f"{_PDF}--b--\r\n"), ("StartBoundaryNotFoundDefect", "MultipartInvariantViolationDefect")),
        (_mp(f"--b\r\n{_PDF}--b--\r\n", ctype="multipart/mixed"),
         ("NoBoundaryInMultipartDefect", "MultipartInvariantViolationDefect")),
        (_mp(f"--b\r\n{_PDF}--b--\r\n", extra="Not a header\r\n"), ("MissingHeaderBodySeparatorDefect",)),
    ],
)
def test_unsplittable_multipart_is_reported_not_lost(raw, defects):
    # The parts cannot be told apart: no attachment, but the defect says why (staff see it with the mail).
    mail = parse_message(raw)
    assert (mail.from_addr, mail.attachments, mail.defects) == ("a@b.vn", (), defects)


def _mutations(raw: bytes, rng: random.Random, n: int) -> list[bytes]:
    """Truncated, doubled, dropped and damaged lines: what broken clients and relays make of a mail."""
    out = []
    for _ in range(n):
        lines = raw.split(b"\n")
        op = rng.randrange(8)
        k = rng.randrange(len(lines))
        if op == 0:
            out.append(raw[: rng.randrange(len(raw) + 1)])
            continue
        if op == 1:
            del lines[k]
        elif op == 2:
            lines.insert(k, lines[k])
        elif op == 3:
            lines.insert(k, b"" if rng.random() < 0.5 else b"\r")
        elif op == 4:
            lines[k] = lines[k].rstrip(b"\r")
        elif op == 5:
            lines[k] = lines[k] + b" \t"
        elif op == 6:
            lines[k] = b"--" + lines[k]
        else:
            lines[k] = lines[k].replace(b"--", b"-", 1)
        out.append(b"\n".join(lines))
    return out


def test_damaged_copies_never_raise_anything_but_parse_error():
    atts = [(FORM, XLSX, s.XLSX_TYPE), ("ảnh chụp.jpg", PHOTO, "image/jpeg")]
    base = s.gmail_message(UNIT, BOX, SUBJECT, "x", atts[:1], message_id="<fwd@x>")
    corpus = [
        s.outlook_message(UNIT, BOX, SUBJECT, "x", atts),
        s.thunderbird_message(UNIT, BOX, SUBJECT, "x", atts),
        s.forwarded_message(UNIT, BOX, "Fwd", base),
        s.bounce(base, "nobody@x.vn"),
        *(_peer_bytes(name) for name in ("m0018.txt", "m3004.txt", "m4006.txt")),  # uuencode, RFC 2231, TNEF
    ]
    rng = random.Random(20221)
    outcomes = {"parsed": 0, "refused": 0}
    for raw in corpus:
        for damaged in _mutations(raw, rng, 15):
            try:
                mail = parse_message(damaged)
            except MessageParseError:
                outcomes["refused"] += 1
            else:
                outcomes["parsed"] += 1
                for att in mail.attachments:
                    assert att.filename == sanitise_filename(att.filename)
            message_id = header_message_id(damaged)
            assert isinstance(message_id, str) and len(message_id) <= 900
    assert outcomes["parsed"] > 10 * outcomes["refused"]  # only a copy cut down to no header at all is refused


def _peer_bytes(name: str) -> bytes:
    path = PEER / name
    return path.read_bytes() if path.is_file() else s.gmail_message(UNIT, BOX, name, "x")


# --------------------------------------------------------------------------- header_message_id (dedup key)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"Message-ID: <a@b>\r\n\r\nbody", "<a@b>"),
        (b"Subject: x\r\nMessage-Id:\r\n <a@b>\r\n\r\n", "<a@b>"),  # folded, any case
        (b"Message-ID: <a@b>  (c)\r\n\t x\r\n", "<a@b> (c) x"),  # whitespace collapsed, nothing else
        (b"Message-ID: <first@x>\r\nMessage-ID: <second@x>\r\n\r\n", "<first@x>"),
        (b"Subject: x\r\n\r\nMessage-ID: <in-the-body@x>", ""),
        ("Message-ID: <ạ@b.vn>\r\n\r\n".encode(), "<\ufffd\ufffd\ufffd@b.vn>"),  # as recorded so far: keep it so
        (b"X-Big: " + b"a" * 300_000 + b"\r\nMessage-ID: <late@x>\r\n\r\n", ""),  # only the first 256 KiB is read
        (b"Message-ID: <" + b"x" * 2000 + b">\r\n", "<" + "x" * 899),
        (b"", ""),
        (b"\x00\xff\xfe", ""),
    ],
)
def test_header_message_id(raw, expected):
    assert header_message_id(raw) == expected


def test_header_message_id_of_client_mail_is_its_message_id():
    for raw in (s.gmail_message(UNIT, BOX, SUBJECT, "x", message_id="<CAK1@mail.gmail.com>"),
                s.outlook_message(UNIT, BOX, SUBJECT, "x", [(FORM, XLSX, s.XLSX_TYPE)])):
        assert header_message_id(raw) == parse_message(raw).message_id
