"""notify.build_mail writes the usual mail directly: it must read exactly like the email-package build.

Both builders get the same inputs; both outputs are parsed with ``policy.default`` and compared header by
header (decoded strings), part by part (content types, decoded bodies, attachment names and bytes). Every
line must end in CRLF and be at most 998 octets (78 where it can be folded).
"""
from __future__ import annotations

import email
import email.policy
import itertools
import re
from email.header import decode_header, make_header
from email.utils import formataddr, parsedate_to_datetime

import pytest

from pipeline import notify

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
LONG_VI = ("Báo cáo số lượng học sinh đăng ký tuyển sinh vào lớp 10 năm học 2025–2026 của trường "
           "Trung học phổ thông Nguyễn Huệ, thành phố Huế, tỉnh Thừa Thiên Huế")

SUBJECTS = [
    "Re: Báo cáo tháng 11",
    "Re: " + LONG_VI,
    LONG_VI,
    "Re: Registration form for the 2025 intake of the district's primary schools, second round (resent)",
    "Re: a  b   c   (spaces kept)",
    "Re: =?utf-8?q?looks_encoded?= but is not",
    "Trả lời: Đơn vị đã gửi — “ngoặc kép” và 'nháy đơn' <không phải địa chỉ> ; ; @",
    "Re: x" * 40,
    "Re: " + "Đ" * 200,
    "Re: (không có tiêu đề)",
    "Re: Tiếng Việt tổ hợp NFD: Tiếng Việt",
    "Re: emoji 📎 đính kèm ✅",
    "Re: " + "a" * 120,  # one ASCII word longer than a line
]
NAMES = [
    "", "Intake", "Phòng Giáo dục và Đào tạo", "Sở Giáo dục và Đào tạo tỉnh Thừa Thiên Huế — Bộ phận tiếp nhận "
    "hồ sơ tuyển sinh trực tuyến", 'Văn thư "Phòng KH-TC"', "Doe, John (Intake)", "O'Brien",
]
FILENAMES = [
    "dang_ky.xlsx", "Mẫu đăng ký.xlsx", "Mẫu đăng ký tuyển sinh lớp 10 năm học 2025–2026 trường THPT Nguyễn Huệ.xlsx",
    "a very long plain ascii file name for the registration workbook of the unit 2025.xlsx",
    'quote"and\\backslash.xlsx', "tên có dấu; chấm phẩy = bằng.xlsx",
]
TEXTS = [
    "Kính gửi đơn vị,\n\nĐã nhận được tệp.\n",
    "short ascii\n",
    "Dòng rất dài " * 30 + "\n" + "dòng hai\n",
    "a" * 200 + "\n",
    "no final newline",
    "crlf line\r\nand lone cr\rend\n",
    "--=_intake_ looks like a boundary\n",
]
HTML = [None, "<p>Xin chào</p>\n", "<html><body><table>" + "<tr><td>Ô dữ liệu</td></tr>" * 20 + "</table></body></html>\n"]


def _both(**kw):
    args = dict(name="", addr="intake@so.example.vn", to=["a@b.vn"], cc=(), subject="s", mid="<m1@so.example.vn>",
                text="t\n", html=None, in_reply_to=None, refs=[], attachments=[], auto_submitted=True)
    args.update(kw)
    fast = notify._build_mail_fast(**args)
    assert fast is not None, kw
    _same(notify._build_mail_email(**args), fast, **args)


def _check_lines(raw: bytes) -> None:
    assert raw.endswith(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF"
    assert b"\r" not in raw.replace(b"\r\n", b""), "bare CR"
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998
    for line in head.split(b"\r\n"):
        words = line.split(b" ")
        assert len(line) <= 78 or max(len(w) for w in words) > 60, line


def _parts(msg):
    out = []
    for part in msg.walk():
        item = {"type": part.get_content_type(), "disposition": part.get_content_disposition(),
                "filename": part.get_filename(), "charset": part.get_content_charset()}
        if not part.is_multipart():
            content = part.get_content()
            # line ends of text: CRLF after quoted-printable, LF after base64 in the email package's build
            item["content"] = content.replace("\r\n", "\n") if isinstance(content, str) else content
        out.append(item)
    return out


def _rfc2047(raw: bytes, name: str) -> str:
    """A header's text decoded as RFC 2047 says (whitespace between adjacent encoded words dropped).

    ``policy.default`` keeps that whitespace inside address phrases (a Python bug), so a display name longer
    than one encoded word reads with stray spaces there, from either builder; mail clients read it right.
    """
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    return str(make_header(decode_header(msg[name])))


def _same(old: bytes, new: bytes, **inputs) -> None:
    """``new`` says exactly what was asked for and has the headers and parts of ``old``."""
    _check_lines(new)
    a = email.message_from_bytes(old, policy=email.policy.default)
    b = email.message_from_bytes(new, policy=email.policy.default)
    assert not b.defects
    for part in b.walk():
        assert not part.defects, part.defects
    # the same header fields (the email package puts MIME-Version after a single part's own headers)
    assert sorted(a.keys()) == sorted(b.keys())
    for key in ("To", "Cc", "Message-ID", "In-Reply-To", "References", "Auto-Submitted", "MIME-Version"):
        assert str(a[key]) == str(b[key]), key
    assert b["Subject"] == inputs["subject"]  # (the email package loses a space or decodes a literal =?..?= in a few)
    assert b["From"].addresses[0].addr_spec == inputs["addr"]
    if inputs["name"]:
        assert _rfc2047(new, "From") == formataddr((inputs["name"], inputs["addr"])) \
            or _rfc2047(new, "From") == f"{inputs['name']} <{inputs['addr']}>"
    assert [x.addr_spec for x in b["To"].addresses] == list(inputs["to"])
    assert abs((parsedate_to_datetime(a["Date"]) - parsedate_to_datetime(b["Date"])).total_seconds()) < 5
    assert a.get_content_type() == b.get_content_type()
    assert _parts(a) == _parts(b)


@pytest.mark.parametrize("subject", SUBJECTS)
def test_subjects(subject):
    _both(subject=subject)


@pytest.mark.parametrize("name", NAMES)
def test_sender_names(name):
    _both(name=name, subject="Re: Báo cáo")


@pytest.mark.parametrize("filename", FILENAMES)
def test_attachment_names(filename):
    data = bytes(range(256)) * 23 + b"PK"  # an odd length, every byte value
    _both(attachments=[(filename, data, XLSX)], html="<p>x</p>\n")
    _both(attachments=[(filename, b"\x00\xff" * 3000, "application")])


@pytest.mark.parametrize("text,html", list(itertools.product(TEXTS, HTML)))
def test_bodies(text, html):
    _both(text=text, html=html)


def test_threading_recipients_and_everything_together():
    refs = [f"<ref-{i}-abcdefghijklmnop@mail.gmail.com>" for i in range(12)]
    for in_reply_to, auto in itertools.product([None, "<CAJ+x=y_z@mail.gmail.com>"], [True, False]):
        _both(name=NAMES[3], to=["truong.thpt.nguyenhue@example.edu.vn"] * 5,
                     cc=["staff1@so.example.vn", "staff-two@so.example.vn"], subject=SUBJECTS[1],
                     text=TEXTS[0], html=HTML[2], in_reply_to=in_reply_to,
                     refs=refs + ([in_reply_to] if in_reply_to else []),
                     attachments=[(FILENAMES[2], b"PK" * 500, XLSX), (FILENAMES[0], b"x", "text/csv")],
                     auto_submitted=auto)


def test_build_mail_returns_its_message_id_and_falls_back_for_unusual_input():
    mid, raw = notify.build_mail(sender="Phòng GD <intake@so.example.vn>", to=["a@b.vn"], subject="Re: Báo cáo",
                                 text="x\n", in_reply_to="<p@q>", references=["<o@q>"])
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Message-ID"] == mid and msg["References"] == "<o@q> <p@q>"
    assert msg["Auto-Submitted"] == "auto-replied" and msg["From"].addresses[0].display_name == "Phòng GD"
    assert re.search(rb"^Subject: Re: =\?utf-8\?b\?", raw, re.M)  # the fast path wrote it
    # A non-ASCII address is not the usual kind: the email package builds it, as before.
    args = dict(name="", addr="intake@so.example.vn", to=["người@ví-dụ.vn"], cc=(), subject="s", mid="<m@x>",
                text="t\n", html=None, in_reply_to=None, refs=[], attachments=[], auto_submitted=True)
    assert notify._build_mail_fast(**args) is None
    mid, raw = notify.build_mail(sender="intake@so.example.vn", to=["người@ví-dụ.vn"], subject="s", text="t\n")
    assert email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"] == mid
