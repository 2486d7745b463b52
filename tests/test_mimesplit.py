"""mimesplit builds the very Message tree FeedParser builds, or steps aside (Unusual).

Differential: every peer sample, every message the sample builders make, hand-made edge cases of
the multipart grammar, and thousands of seeded mutations of all of them. For each input, either the
fast path declines or its tree (headers, payloads, preambles, epilogues, defects, default types)
equals FeedParser's with the same policy, and mime.parse_message gives the same ParsedMail either way.
"""
from __future__ import annotations

import email
import random
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

import pytest

from pipeline import mime, mimesplit, samplemail as s, worker
from pipeline.forms import samples as form_samples

PEER = Path(__file__).resolve().parents[2] / "shared" / "peer-mail" / "mail-mime-parser"
UNIT = "cd001@truongmnhoasua.edu.vn"
BOX = "ldld.longbien@gmail.com"
SUBJECT = "Đăng ký mô hình Dân vận khéo năm 2022 – CĐCS Trường MN Hoa Sữa"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _tree(m: email.message.Message) -> dict:
    payload = m._payload
    if isinstance(payload, list):
        payload = [_tree(p) for p in payload]
    out = {k: v for k, v in vars(m).items() if not k.startswith("_intake")}
    out["_payload"] = payload
    out["defects"] = [(type(d).__name__, str(d)) for d in m.defects]
    out["policy"] = type(m.policy).__name__
    out["class"] = type(m).__name__
    return out


def _compare(raw: bytes) -> str:
    """'fast' when mimesplit built FeedParser's tree, 'declined' when it stepped aside; fails otherwise."""
    text = raw.decode("ascii", "surrogateescape")
    try:
        fast = mimesplit.split(text, mime._POLICY)
    except mimesplit.Unusual:
        return "declined"
    slow = email.message_from_bytes(raw, policy=mime._POLICY)
    assert _tree(fast) == _tree(slow)
    return "fast"


def _header_id_by_email_package(raw: bytes) -> str:
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw[:262144])
        return " ".join(str(headers.get("Message-ID") or "").split())[:900]
    except Exception:  # noqa: BLE001
        return ""


def _builders() -> list[tuple[str, bytes]]:
    xlsx = form_samples.registration_xlsx("Công đoàn cơ quan UBND quận", [("Tổ Văn phòng", "Một cửa", "khac")])
    atts = [("Biểu đăng ký Dân vận khéo 2022.xlsx", xlsx, XLSX_TYPE), ("ảnh chụp.jpg", b"\xff\xd8\xff" * 500, "image/jpeg")]
    out: list[tuple[str, bytes]] = []
    for builder in (s.outlook_message, s.thunderbird_message):
        out.append((builder.__name__, builder(UNIT, BOX, SUBJECT, "Kính gửi.", atts, sender_name="Công đoàn",
                                              in_reply_to="<a@b>")))
    for style in ("gmail", "outlook", "thunderbird"):
        out.append((f"gmail-{style}", s.gmail_message(UNIT, BOX, SUBJECT, "Kính gửi.", atts, sender_name="Công đoàn",
                                                      filename_style=style)))
    base = s.gmail_message(UNIT, BOX, SUBJECT, "x", atts[:1], message_id="<fwd@x>")
    out += [
        ("no-attachment", s.gmail_message(UNIT, BOX, SUBJECT, "Chỉ có chữ.")),
        ("spoofed", s.spoofed(UNIT, BOX, SUBJECT, "x", atts)),
        ("signature", s.with_signature_image(UNIT, BOX, SUBJECT, "x", atts)),
        ("forwarded", s.forwarded_message(UNIT, BOX, "Fwd", base)),
        ("forwarded-twice", s.forwarded_message(UNIT, BOX, "Fwd", s.forwarded_message(UNIT, BOX, "Fwd", base))),
        ("auto-reply", s.auto_reply(UNIT, BOX, SUBJECT)),
        ("bounce", s.bounce(base, "nobody@x.vn")),
    ]
    return out


def _handmade() -> list[tuple[str, bytes]]:
    """The multipart grammar's corners, each around one FeedParser rule."""
    def mp(body: str, ctype: str = 'multipart/mixed; boundary="b"', extra: str = "") -> bytes:
        return (f"From: a@b.vn\r\nSubject: x\r\n{extra}Content-Type: {ctype}\r\n\r\n{body}").encode()

    leaf = "Content-Type: text/plain\r\n\r\nhello\r\n"
    return [
        ("preamble-epilogue", mp(f"preamble line\r\n--b\r\n{leaf}--b--\r\nepilogue\r\n")),
        ("no-preamble", mp(f"--b\r\n{leaf}--b--")),
        ("close-without-newline", mp(f"--b\r\n{leaf}--b--")),
        ("close-with-blank-epilogue", mp(f"--b\r\n{leaf}--b--\r\n\r\n\r\n")),
        ("delimiter-with-spaces", mp(f"--b \t\r\n{leaf}--b-- \r\n")),
        ("lf-only", mp(f"--b\n{leaf}--b--\n").replace(b"\r\n", b"\n")),
        ("cr-only", mp(f"--b\r\n{leaf}--b--\r\n").replace(b"\r\n", b"\r")),
        ("mixed-newlines", mp(f"pre\n--b\r{leaf}--b--\n")),
        ("boundary-prefix-lines", mp(f"--b\r\n{leaf}--bx not a delimiter\r\n-- b\r\n--b--\r\n")),
        ("delimiter-mid-line", mp("--b\r\nContent-Type: text/plain\r\n\r\ntext --b\r\n--b--\r\n")),
        ("part-without-headers", mp("--b\r\n\r\njust text\r\n--b--\r\n")),
        ("part-headers-only", mp("--b\r\nContent-Type: text/plain\r\n--b--\r\n")),
        ("empty-part", mp(f"--b\r\n--b\r\n{leaf}--b--\r\n")),
        ("no-close", mp(f"--b\r\n{leaf}")),
        ("no-open", mp(f"{leaf}--b--\r\n")),
        ("close-first", mp(f"--b--\r\n{leaf}")),
        ("no-boundary-param", mp(f"--b\r\n{leaf}--b--\r\n", ctype="multipart/mixed")),
        ("nested", mp(f'--b\r\nContent-Type: multipart/alternative; boundary="b2"\r\n\r\n--b2\r\n{leaf}--b2--\r\n'
                      f"inner epilogue\r\n--b--\r\n")),
        ("nested-prefix-boundary", mp(f'--b\r\nContent-Type: multipart/alternative; boundary="b-1"\r\n\r\n'
                                      f"--b-1\r\n{leaf}--b-1--\r\n--b--\r\n")),
        ("nested-unclosed", mp(f'--b\r\nContent-Type: multipart/alternative; boundary="c"\r\n\r\n--c\r\n{leaf}'
                               f"--b--\r\n")),
        ("rfc822-part", mp("--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: c@d.vn\r\nSubject: in\r\n\r\nbody\r\n"
                           "--b--\r\n")),
        ("rfc822-multipart", mp('--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: c@d.vn\r\n'
                                'Content-Type: multipart/mixed; boundary="i"\r\n\r\n--i\r\n'
                                f"{leaf}--i--\r\nin-epi\r\n--b--\r\n")),
        ("digest", mp(f"--b\r\n\r\nFrom: c@d.vn\r\n\r\ndigested\r\n--b\r\n{leaf}--b--\r\n",
                      ctype='multipart/digest; boundary="b"')),
        ("delivery-status", mp("--b\r\nContent-Type: message/delivery-status\r\n\r\nAction: failed\r\n\r\n--b--\r\n",
                               ctype='multipart/report; report-type=delivery-status; boundary="b"')),
        ("cte-on-multipart", mp(f"--b\r\n{leaf}--b--\r\n", extra="Content-Transfer-Encoding: base64\r\n")),
        ("folded-headers", mp("--b\r\nContent-Type: text/plain;\r\n\tcharset=utf-8\r\n\r\nx\r\n--b--\r\n",
                              extra="X-Long: one\r\n two\r\n")),
        ("unix-from", b"From someone Mon Jan 1 00:00:00 2022\r\n" + mp(f"--b\r\n{leaf}--b--\r\n")),
        ("header-without-colon", mp(f"--b\r\n{leaf}--b--\r\n", extra="Not a header\r\n")),
        ("empty-header-name", mp(f"--b\r\n{leaf}--b--\r\n", extra=": no name\r\n")),
        ("leading-continuation", b" folded first\r\n" + mp(f"--b\r\n{leaf}--b--\r\n")),
        ("headers-only", b"From: a@b.vn\r\nSubject: x"),
        ("8bit-header", "From: a@b.vn\r\nSubject: Đăng ký\r\n\r\nbody".encode()),
        ("boundary-regex-chars", mp(f"--a.b*c+(d)\r\n{leaf}--a.b*c+(d)--\r\n", ctype='multipart/mixed; boundary="a.b*c+(d)"')),
    ]


def _corpus() -> list[tuple[str, bytes]]:
    peer = [(p.name, p.read_bytes()) for p in sorted(PEER.glob("*.txt"))] if PEER.is_dir() else []
    return peer + _builders() + _handmade()


def _mutations(raw: bytes, rng: random.Random, n: int) -> list[bytes]:
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
            lines[k] = lines[k].rstrip(b"\r")  # one LF-only line among CRLF ones
        elif op == 5:
            lines[k] = lines[k] + b" \t"
        elif op == 6:
            lines[k] = b"--" + lines[k]
        else:
            lines[k] = lines[k].replace(b"--", b"-", 1)
        out.append(b"\n".join(lines))
    return out


@pytest.mark.parametrize("name,raw", _corpus(), ids=lambda v: v if isinstance(v, str) else "")
def test_same_tree_as_feedparser(name, raw):
    _compare(raw)
    assert mime.parse_message(raw) == _parse_message_with_feedparser(raw), name
    assert worker.header_message_id(raw) == _header_id_by_email_package(raw), name


def _parse_message_with_feedparser(raw: bytes):
    saved = mime.mimesplit.split

    def decline(*_a, **_k):
        raise mimesplit.Unusual("test: FeedParser only")

    mime.mimesplit.split = decline
    try:
        return mime.parse_message(raw)
    finally:
        mime.mimesplit.split = saved


def test_fast_path_taken_for_what_clients_send():
    """Not a vacuous comparison: every builder message and most peer samples go the fast way."""
    built = {name: _compare(raw) for name, raw in _builders()}
    assert built.pop("bounce") == "declined"  # message/delivery-status bodies are FeedParser's alone
    assert set(built.values()) == {"fast"}, built
    handmade = {name: _compare(raw) for name, raw in _handmade()}
    for name in ("preamble-epilogue", "lf-only", "cr-only", "mixed-newlines", "nested", "nested-prefix-boundary",
                 "rfc822-multipart", "digest", "cte-on-multipart", "boundary-regex-chars", "part-without-headers"):
        assert handmade[name] == "fast", name
    for name in ("empty-part", "no-close", "no-open", "close-first", "no-boundary-param", "nested-unclosed",
                 "delivery-status", "unix-from", "header-without-colon", "empty-header-name", "leading-continuation"):
        assert handmade[name] == "declined", name
    if PEER.is_dir():
        peer = [_compare(p.read_bytes()) for p in sorted(PEER.glob("*.txt"))]
        assert peer.count("fast") >= len(peer) * 0.8


def test_mutated_copies_agree():
    rng = random.Random(20221)
    seen = {"fast": 0, "declined": 0}
    corpus = _corpus()
    for name, raw in corpus:
        for mutated in _mutations(raw, rng, 40):
            try:
                seen[_compare(mutated)] += 1
            except AssertionError:
                pytest.fail(f"{name}: mutated copy differs from FeedParser: {mutated[:300]!r}")
            assert worker.header_message_id(mutated) == _header_id_by_email_package(mutated), name
    assert seen["fast"] > seen["declined"] > 0
