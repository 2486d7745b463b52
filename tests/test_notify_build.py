"""compose.build_mail and receipt_item: the mail as the email package (and a mail client) reads it back.

Every message is parsed again: the headers say what was asked for (Vietnamese subjects and names word for
word, message ids untouched so that the receipt stays in the unit's thread), the parts are the text, the
HTML alternative and the attachments with their RFC 2231 file names and exact bytes, and every line ends in
CRLF within SMTP's 998 octets (78 in the header, but for a message id longer than that).
"""
from __future__ import annotations

import email
import email.policy
import itertools
import random
import re
from datetime import datetime
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import formataddr, parsedate_to_datetime
from pathlib import Path

import pytest

from pipeline.outbox import compose

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SENDER = "LĐLĐ quận Long Biên <ldldlongbien@gmail.com>"
LONG_VI = ("Báo cáo số lượng học sinh đăng ký tuyển sinh vào lớp 10 năm học 2025–2026 của trường "
           "Trung học phổ thông Nguyễn Huệ, thành phố Huế, tỉnh Thừa Thiên Huế")
# Outlook's message ids are longer than a header line.
OUTLOOK_ID = "<SG2PR06MB3456789ABCDEF0123456789ABCDEF01234567@SG2PR06MB3456.apcprd06.prod.outlook.com>"

SUBJECTS = [
    "Re: Báo cáo tháng 11",
    "Re: " + LONG_VI,
    LONG_VI,  # Python 3.11's own folder writes "phổ thôngNguyễn" here
    "Re: Registration form for the 2025 intake of the district's primary schools, second round (resent)",
    "Re: a  b   c   (spaces kept)",
    "Trả lời: Đơn vị đã gửi — “ngoặc kép” và 'nháy đơn' <không phải địa chỉ> ; ; @",
    "Re: x" * 40,
    "Re: " + "Đ" * 200,
    "Re: (không có tiêu đề)",
    "Re: Tiếng Việt tổ hợp NFD: Tiếng Việt",
    "Re: emoji 📎 đính kèm ✅",
    "Re: " + "a" * 120,  # one ASCII word longer than a line
]
NAMES = [
    "Intake", "Phòng Giáo dục và Đào tạo", "LĐLĐ quận Long Biên",
    "Sở Giáo dục và Đào tạo tỉnh Thừa Thiên Huế — Bộ phận tiếp nhận hồ sơ tuyển sinh trực tuyến",
    'Văn thư "Phòng KH-TC"', "Doe, John (Intake)", "O'Brien", "Phòng GD, Đào tạo",
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
    "--=_intake_ looks like a boundary\n",
]
HTML = [None, "<p>Xin chào</p>\n", "<html><body><table>" + "<tr><td>Ô dữ liệu</td></tr>" * 20 + "</table></body></html>\n"]


def _build(**kw) -> tuple[str, bytes, EmailMessage]:
    args = dict(sender=SENDER, to=["cdcs.ubnd@longbien.gov.vn"], subject="Re: Đăng ký", text="Đã nhận.\n")
    args.update(kw)
    mid, raw = compose.build_mail(**args)
    _check_lines(raw)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert not [d for part in msg.walk() for d in part.defects]
    return mid, raw, msg


def _check_lines(raw: bytes) -> None:
    assert raw.endswith(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF"
    assert b"\r" not in raw.replace(b"\r\n", b""), "bare CR"
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        assert len(line) <= 78 or OUTLOOK_ID.encode() in line, line


def _unfolded(raw: bytes, name: str) -> str:
    """A header's value as written (unfolded, nothing decoded)."""
    return re.sub(r"\r?\n(?=[ \t])", "", email.message_from_bytes(raw, policy=email.policy.compat32)[name])


def _as_a_client_reads(raw: bytes, name: str) -> str:
    """A header's text decoded as RFC 2047 says (whitespace between adjacent encoded words dropped).

    ``policy.default`` keeps that whitespace inside address phrases (a Python bug), so a display name longer
    than one encoded word reads with stray spaces there; mail clients read it right, as this does.
    """
    return str(make_header(decode_header(_unfolded(raw, name))))


def _text(part: EmailMessage) -> str:
    return part.get_content().replace("\r\n", "\n")


@pytest.mark.parametrize("subject", SUBJECTS)
def test_subjects_read_back_word_for_word(subject: str) -> None:
    _mid, raw, msg = _build(subject=subject)
    assert msg["Subject"] == subject
    assert _as_a_client_reads(raw, "Subject") == subject


def test_random_vietnamese_subjects_and_sender_names_read_back_word_for_word() -> None:
    """Long non-ASCII headers folded over several encoded words keep every space (the 3.11 folder does not)."""
    words = (LONG_VI + " Dân vận khéo CĐCS phường Ngọc Thụy (gửi lại) Re: Fwd: GPMB M2 Q1/2022 📎 \"q\" <x> ;"
             " @ , a b").split()
    rng = random.Random(10)
    for _ in range(100):
        subject = " ".join(rng.choice(words) for _ in range(rng.randint(1, 40)))
        name = " ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))
        _mid, raw, msg = _build(sender=formataddr((name, "ldldlongbien@gmail.com")), subject=subject)
        assert msg["Subject"] == subject
        assert _as_a_client_reads(raw, "From") in (formataddr((name, "ldldlongbien@gmail.com")),
                                                   f"{name} <ldldlongbien@gmail.com>")
        assert msg["From"].addresses[0].addr_spec == "ldldlongbien@gmail.com"


@pytest.mark.parametrize("name", NAMES)
def test_sender_names(name: str) -> None:
    _mid, raw, msg = _build(sender=formataddr((name, "ldldlongbien@gmail.com")))
    assert msg["From"].addresses[0].addr_spec == "ldldlongbien@gmail.com"
    assert _as_a_client_reads(raw, "From") in (formataddr((name, "ldldlongbien@gmail.com")),
                                               f"{name} <ldldlongbien@gmail.com>")
    if len(name) < 30:  # one encoded word: policy.default reads it right too
        assert msg["From"].addresses[0].display_name == name


@pytest.mark.parametrize("filename", FILENAMES)
def test_attachment_names_and_bytes(filename: str) -> None:
    data = bytes(range(256)) * 23 + b"PK"  # an odd length, every byte value
    _mid, raw, msg = _build(html="<p>x</p>\n", attachments=[(filename, data, XLSX), ("blank.bin", b"\x00\xff" * 3000,
                                                                                     "application")])
    assert msg.get_content_type() == "multipart/mixed"
    body, first, second = msg.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert (first.get_filename(), first.get_content_type(), first.get_content()) == (filename, XLSX, data)
    assert first.get_content_disposition() == "attachment" and first["Content-Transfer-Encoding"] == "base64"
    assert (second.get_filename(), second.get_content_type()) == ("blank.bin", "application/octet-stream")
    assert second.get_content() == b"\x00\xff" * 3000
    if not filename.isascii():
        assert b"filename*" in raw and b"utf-8''" in raw  # RFC 2231, as mail clients expect for Vietnamese names


@pytest.mark.parametrize("text,html", list(itertools.product(TEXTS, HTML)))
def test_bodies(text: str, html: str | None) -> None:
    _mid, _raw, msg = _build(text=text, html=html)
    expected = text if text.endswith("\n") else text + "\n"
    if html is None:
        assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"
        assert _text(msg) == expected
    else:
        assert msg.get_content_type() == "multipart/alternative"
        plain, rich = msg.iter_parts()
        assert (plain.get_content_type(), rich.get_content_type()) == ("text/plain", "text/html")
        assert _text(plain) == expected and _text(rich) == html
        assert rich.get_content_charset() == "utf-8"


def test_threading_recipients_and_auto_submitted() -> None:
    refs = [f"<ref-{i}-abcdefghijklmnop@mail.gmail.com>" for i in range(12)] + [OUTLOOK_ID]
    mid, raw, msg = _build(to=["truong.thpt.nguyenhue@example.edu.vn", "b@example.vn"],
                           cc=["staff1@so.example.vn", "staff-two@so.example.vn"],
                           in_reply_to=OUTLOOK_ID, references=refs[:-1])
    assert msg["Message-ID"] == mid and mid.endswith("@gmail.com>")
    assert msg["In-Reply-To"] == OUTLOOK_ID and msg["References"].split() == refs
    # as written, not as encoded words (Python would decode those, mail clients would not find the thread)
    assert _unfolded(raw, "In-Reply-To") == OUTLOOK_ID and _unfolded(raw, "References").split() == refs
    assert msg["Auto-Submitted"] == "auto-replied"
    assert [a.addr_spec for a in msg["To"].addresses] == ["truong.thpt.nguyenhue@example.edu.vn", "b@example.vn"]
    assert [a.addr_spec for a in msg["Cc"].addresses] == ["staff1@so.example.vn", "staff-two@so.example.vn"]
    assert abs((parsedate_to_datetime(msg["Date"]) - datetime.now().astimezone()).total_seconds()) < 60

    # the parent is not repeated when it is already last in References
    _mid, _raw, msg = _build(in_reply_to="<p@q>", references=["<o@q>", "<p@q>"])
    assert msg["References"] == "<o@q> <p@q>"
    _mid, _raw, msg = _build()
    assert msg["Auto-Submitted"] == "auto-generated" and "In-Reply-To" not in msg and "References" not in msg
    _mid, _raw, msg = _build(auto_submitted=False)
    assert "Auto-Submitted" not in msg


def test_a_non_ascii_address_still_builds() -> None:
    """Such a recipient is refused when the mail is sent (tests/test_smtp.py), not when it is built."""
    mid, _raw, msg = _build(to=["người@ví-dụ.vn"])
    assert msg["Message-ID"] == mid


def test_a_line_break_in_a_header_is_refused() -> None:
    with pytest.raises(ValueError):
        compose.build_mail(sender=SENDER, to=["a@b.vn"], subject="Re: x\r\nBcc: victim@example.vn", text="x")


def test_receipt_item_is_a_threaded_reply_with_the_blank_form() -> None:
    env = compose.template_env(Path(__file__).resolve().parents[1] / "templates")
    view = {"unit_name": "CĐCS Phường Ngọc Thụy", "organisation": "LĐLĐ quận Long Biên",
            "received_at": datetime(2022, 2, 21, 9, 15), "subject": "Đăng ký Dân vận khéo 2022",
            "documents": [{"filename": "Đăng ký DVK.xlsx", "kind_label": "Đăng ký mô hình Dân vận khéo",
                           "kind_label_short": "Mẫu đăng ký", "period_label": None, "state": "rejected",
                           "state_label": "chưa ghi nhận", "on_time": None, "due_label": "28/02/2022",
                           "counts": [], "total": 0, "category_labels": [],
                           "issues": [{"severity": "error", "location": "Sheet1!F7",
                                       "message": "Dòng 7 chưa đánh dấu lĩnh vực nào"}]}]}
    form = b"PK\x03\x04" + bytes(range(256)) * 4
    item = compose.receipt_item(env, view, sender=SENDER, to=["cdcs.ngocthuy@longbien.gov.vn"], key="receipt:1",
                               message_pk=1, unit_id="cd001", in_reply_to="<form@mail.gmail.com>",
                               references=["<first@mail.gmail.com>"], subject="Đăng ký Dân vận khéo 2022",
                               attachments=[("Mẫu đăng ký Dân vận khéo.xlsx", form, XLSX)])
    assert item.subject == "Re: Đăng ký Dân vận khéo 2022" and item.purpose == "receipt"
    _check_lines(item.raw)
    msg = email.message_from_bytes(item.raw, policy=email.policy.default)
    assert msg["Subject"] == item.subject and msg["Message-ID"] == item.smtp_message_id
    assert msg["In-Reply-To"] == "<form@mail.gmail.com>"
    assert msg["References"] == "<first@mail.gmail.com> <form@mail.gmail.com>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["From"].addresses[0].display_name == "LĐLĐ quận Long Biên"
    body, blank = msg.iter_parts()
    plain, rich = body.iter_parts()
    assert "Kính gửi Ban Chấp hành CĐCS Phường Ngọc Thụy" in plain.get_content()
    assert "Dòng 7 chưa đánh dấu lĩnh vực nào" in plain.get_content()
    assert "Sheet1!F7" in rich.get_content()
    assert blank.get_filename() == "Mẫu đăng ký Dân vận khéo.xlsx" and blank.get_content() == form

    # a reply's subject is not prefixed twice
    again = compose.receipt_item(env, view, sender=SENDER, to=["a@b.vn"], key="receipt:2", message_pk=2, unit_id=None,
                                in_reply_to=None, references=(), subject="Trả lời: Đăng ký")
    assert again.subject == "Trả lời: Đăng ký"
