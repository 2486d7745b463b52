"""bench/leansink.py, the bench's lean SMTP server: a real server that real clients talk to.

Most tests run it as the bench does, a child process (``python bench/leansink.py --keep``) asked over stdin,
and talk to it with ``smtplib``, with the project's ``SmtpTransport`` (pipelined and not) and with a raw
socket. What it stored is compared by SHA-256 (``dump``). Two tests drive the protocol class in this process
with a recording transport, to split one session at every byte and to see that the replies to one read go
out in one write.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from pipeline.config import SmtpConfig
from pipeline.notify import SmtpTransport, build_mail

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "leansink.py"
SENDER = "LĐLĐ quận Long Biên <ldldlongbien@gmail.com>"
FROM = "ldldlongbien@gmail.com"


def _load_module():
    spec = importlib.util.spec_from_file_location("intake_bench_leansink", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


leansink = _load_module()


class LeanSink:
    """bench/leansink.py in a child process."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(SCRIPT), *args], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.proc.kill()
            raise RuntimeError(f"leansink did not start: {line!r}")
        self.host, self.port = "127.0.0.1", int(line)

    def ask(self, cmd: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def count(self) -> int:
        return int(self.ask("count"))

    def wait_for(self, n: int, timeout: float = 10.0) -> int:
        """The count once it reaches n (a client may return before the server has counted)."""
        deadline = time.monotonic() + timeout
        while (got := self.count()) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return got

    def dump(self) -> list[dict]:
        return json.loads(self.ask("dump"))

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP(self.host, self.port, timeout=10)

    def socket(self) -> socket.socket:
        s = socket.create_connection((self.host, self.port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def close(self) -> int:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            return self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture(scope="module")
def module_sink() -> Iterator[LeanSink]:
    s = LeanSink("--keep")
    yield s
    assert s.close() == 0


@pytest.fixture
def sink(module_sink: LeanSink) -> LeanSink:
    assert module_sink.ask("clear") == "ok"
    return module_sink


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _cfg(s: LeanSink) -> SmtpConfig:
    return SmtpConfig(host=s.host, port=s.port, security="plain", username=None, password_env=None,
                      timeout=10, ca_file=None, sender=SENDER)


def _receipt(i: int) -> bytes:
    """A receipt as build_mail makes it (~3.5 KB, text and HTML)."""
    text = "".join(f"Dòng {k} của biên nhận số {i}: đã nhận hồ sơ đăng ký.\n" for k in range(24))
    html = "".join(f"<p>Dòng {k} của biên nhận số {i}: đã nhận.</p>\n" for k in range(24))
    return build_mail(sender=SENDER, to=[f"unit{i}@example.vn"], subject=f"Re: Đăng ký số {i}", text=text,
                      html=html, in_reply_to=f"<m{i}@longbien.gov.vn>")[1]


def _replies(data: bytes) -> list[int]:
    """The reply codes in what a server wrote (a multi-line reply counted once, at its last line)."""
    return [int(line[:3]) for line in data.split(b"\r\n") if line[3:4] == b" "]


def _recv_until(s: socket.socket, n_replies: int) -> bytes:
    got = b""
    while len(_replies(got)) < n_replies:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


DOTS = (b"From: a@example.vn\r\nTo: b@example.vn\r\nSubject: dots\r\n\r\n"
        b".\r\n..\r\n.hidden\r\n...three\r\nmid.dle\r\n. space\r\n.\r\nend\r\n")


# ------------------------------------------------------------------------------------ real clients
def test_smtplib_messages_over_one_connection_arrive_byte_identical(sink: LeanSink) -> None:
    big = b"Subject: big\r\n\r\n" + b"".join(b"%06d " % i + b"x" * 90 + b"\r\n." * (i % 7 == 0) + b"\r\n"
                                            for i in range(3200))
    assert len(big) > 300_000    # more than one read: asyncio takes in at most 256 KiB at a time
    messages = [
        (DOTS, ["b@example.vn"]),
        (b".first line\r\n.\r\nrest\r\n", ["c@example.vn", "d@example.vn"]),
        (big, ["e@example.vn"]),
        ("Subject: tiếng Việt\r\n\r\nĐã nhận.\r\n".encode(), ["f@example.vn"]),   # 8-bit content
        (b"Subject: no final CRLF\r\n\r\nlast line", ["g@example.vn"]),
        (b"", ["h@example.vn"]),
        (b"\r\n", ["i@example.vn"]),
        (b"x\r\n\r\n.\r\n.\r\n", ["j@example.vn"]),
    ]
    with sink.smtp() as c:
        code, _ = c.ehlo()
        assert code == 250
        assert c.has_extn("pipelining") and c.has_extn("8bitmime") and c.esmtp_features["size"] == "52428800"
        assert not c.has_extn("auth")
        for raw, to in messages:
            assert c.sendmail("a@example.vn", to, raw) == {}
    # smtplib ends a last line without CRLF with one (so an empty message becomes one empty line)
    expected = [raw if raw.endswith(b"\r\n") else raw + b"\r\n" for raw, _ in messages]
    assert sink.wait_for(len(messages)) == len(messages)
    dumped = sink.dump()
    assert [d["sha256"] for d in dumped] == [_sha(r) for r in expected]
    assert [d["to"] for d in dumped] == [to for _, to in messages]
    assert {d["from"] for d in dumped} == {"a@example.vn"}
    assert int(sink.ask("bytes")) == sum(map(len, expected))


def test_smtplib_after_helo(sink: LeanSink) -> None:
    """HELO instead of EHLO: no extensions, smtplib sends the plain commands and the message arrives."""
    with sink.smtp() as c:
        code, msg = c.helo("client.example")
        assert code == 250 and not c.does_esmtp
        assert c.sendmail("a@example.vn", ["b@example.vn"], DOTS) == {}
        code, msg = c.docmd("EHLO", "client.example")          # then EHLO on the same connection
        assert code == 250 and b"PIPELINING" in msg
    assert sink.wait_for(1) == 1
    assert [d["sha256"] for d in sink.dump()] == [_sha(DOTS)]


def test_smtp_transport_pipelines_50_receipts(sink: LeanSink) -> None:
    raws = [_receipt(i) for i in range(50)]
    assert all(3000 < len(r) < 4500 for r in raws)
    t = SmtpTransport(_cfg(sink))
    try:
        for i, raw in enumerate(raws):
            t.send(raw, SENDER, [f"unit{i}@example.vn", "staff@example.org"][: 1 + i % 2])
        assert t.conn is not None and t.conn.has_extn("pipelining")
    finally:
        t.close()
    assert sink.wait_for(50) == 50
    dumped = sink.dump()
    assert [d["sha256"] for d in dumped] == [_sha(r) for r in raws]
    assert [d["to"] for d in dumped] == [[f"unit{i}@example.vn", "staff@example.org"][: 1 + i % 2]
                                         for i in range(50)]
    assert {d["from"] for d in dumped} == {FROM}
    # pipelined: per message one read for MAIL+RCPT+DATA and one (rarely two) for the content; 4 without
    reads = int(sink.ask("reads"))
    assert 2 * 50 <= reads <= 2 * 50 + 25 + 2


def test_smtp_transport_without_pipelining() -> None:
    """With PIPELINING not offered SmtpTransport falls back to smtplib's sendmail: one command per read."""
    s = LeanSink("--keep", "--no-pipelining")
    try:
        raws = [_receipt(i) for i in range(10)]
        t = SmtpTransport(_cfg(s))
        try:
            for i, raw in enumerate(raws):
                t.send(raw, SENDER, [f"unit{i}@example.vn"])
            assert t.conn is not None and t.conn.does_esmtp and not t.conn.has_extn("pipelining")
        finally:
            t.close()
        assert s.wait_for(10) == 10
        assert [d["sha256"] for d in s.dump()] == [_sha(r) for r in raws]
        assert int(s.ask("reads")) >= 4 * 10
    finally:
        assert s.close() == 0


# ------------------------------------------------------------------------------------ raw socket
def test_commands_and_content_split_byte_by_byte(sink: LeanSink) -> None:
    """A client writing one byte at a time (TCP_NODELAY, a pause now and then so reads really are split);
    each command's reply is awaited, as a client that does not pipeline would."""
    content = b"Subject: bytes\r\n\r\n" + DOTS.split(b"\r\n\r\n", 1)[1]
    stuffed = content.replace(b"\r\n.", b"\r\n..")
    steps = [(b"ehlo client.example\r\n", 250), (b"MAIL FROM:<a@example.vn> SIZE=100 BODY=8BITMIME\r\n", 250),
             (b"RCPT TO:<b@example.vn>\r\n", 250), (b"data\r\n", 354), (stuffed + b".\r\n", 250),
             (b"MAIL FROM:<a@example.vn>\r\n", 250), (b"rcpt to:<c@example.vn>\r\n", 250), (b"DATA\r\n", 354),
             (b".\r\n", 250), (b"NOOP\r\n", 250), (b"RSET\r\n", 250), (b"QUIT\r\n", 221)]
    with sink.socket() as s:
        assert _replies(_recv_until(s, 1)) == [220]
        for data, code in steps:
            for k in range(len(data)):
                s.sendall(data[k:k + 1])
                if k % 8 == 7:
                    time.sleep(0.001)
            assert _replies(_recv_until(s, 1)) == [code], data[:40]
        assert s.recv(100) == b""                          # closed after QUIT
    assert sink.wait_for(2) == 2
    assert [d["sha256"] for d in sink.dump()] == [_sha(content), _sha(b"")]
    # one read at least per step (each waits for its reply); more means commands did arrive split (~330
    # bytes with a pause every 8: ~50 reads, fewer when a busy machine lets the bytes pile up)
    assert int(sink.ask("reads")) > 2 * len(steps)


def test_pipelined_commands_over_a_socket(sink: LeanSink) -> None:
    """Two whole transactions and QUIT in one write (content included, which a client may not do but a
    server must survive): every command answered in order; nothing after QUIT is."""
    session = (b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\none\r\n.\r\n"
               b"MAIL FROM:<a@x>\r\nRCPT TO:<d@x>\r\nDATA\r\n..two\r\n.\r\nQUIT\r\nNOOP\r\n")
    with sink.socket() as s:
        s.sendall(session)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    assert _replies(got) == [220, 250, 250, 250, 250, 354, 250, 250, 250, 354, 250, 221]
    assert sink.wait_for(2) == 2
    dumped = sink.dump()
    assert [d["sha256"] for d in dumped] == [_sha(b"one\r\n"), _sha(b".two\r\n")]
    assert [d["to"] for d in dumped] == [["b@x", "c@x"], ["d@x"]]


def test_commands_out_of_order_get_503(sink: LeanSink) -> None:
    with sink.smtp() as c:
        assert c.docmd("MAIL FROM:<a@x>")[0] == 503          # before EHLO/HELO
        assert c.ehlo()[0] == 250
        assert c.docmd("RCPT TO:<b@x>")[0] == 503            # before MAIL
        assert c.docmd("DATA")[0] == 503                     # before MAIL
        assert c.docmd("MAIL FROM:<a@x>")[0] == 250
        assert c.docmd("DATA")[0] == 503                     # before RCPT
        assert c.docmd("MAIL FROM:<a@x>")[0] == 503          # nested
        assert c.docmd("RCPT TO:<b@x>")[0] == 250
        assert c.docmd("RSET")[0] == 250
        assert c.docmd("RCPT TO:<b@x>")[0] == 503            # RSET ended the transaction
        assert c.docmd("MAIL FROM:<>")[0] == 250             # the null reverse-path
        assert c.docmd("RCPT TO:<b@x>")[0] == 250
        assert c.docmd("DATA")[0] == 354
        assert c.docmd(".")[0] == 250
        assert c.docmd("DATA")[0] == 503                     # the transaction is over
    assert sink.wait_for(1) == 1
    assert [(d["from"], d["to"], d["size"]) for d in sink.dump()] == [("", ["b@x"], 0)]


def test_unknown_and_malformed_commands(sink: LeanSink) -> None:
    with sink.smtp() as c:
        for cmd in ("VRFY a@x", "EXPN list", "HELP", "STARTTLS", "AUTH PLAIN AGFAYg==", "FOO bar", "MAILFROM:<a@x>"):
            assert c.docmd(cmd)[0] == 502, cmd
        assert c.docmd("EHLO")[0] == 501                     # no domain
        assert c.docmd("ehlo client")[0] == 250              # verbs in any case
        assert c.docmd("MAIL TO:<a@x>")[0] == 501
        assert c.docmd("MAIL FROM:a@x")[0] == 501
        assert c.docmd("mAiL fRoM: <a@x> SIZE=12 BODY=8BITMIME")[0] == 250
        assert c.docmd("RCPT TO:b@x")[0] == 501
        assert c.docmd("Rcpt To:<b@x>")[0] == 250
        assert c.docmd("NOOP")[0] == 250
        assert c.docmd("Data")[0] == 354
        c.send(b"hello\r\n")
        assert c.docmd(".")[0] == 250
    assert sink.wait_for(1) == 1
    assert [d["sha256"] for d in sink.dump()] == [_sha(b"hello\r\n")]


def test_quit_closes_the_connection(sink: LeanSink) -> None:
    with sink.socket() as s:
        assert _replies(_recv_until(s, 1)) == [220]
        s.sendall(b"quit\r\n")
        got = b""
        while chunk := s.recv(100):
            got += chunk
        assert got.startswith(b"221 ") and _replies(got) == [221]
    with sink.smtp() as c:                                   # and the server goes on
        assert c.noop()[0] == 250
        assert c.quit()[0] == 221
        assert c.sock is None


def test_at_most_100_recipients(sink: LeanSink) -> None:
    with sink.smtp() as c:
        c.ehlo()
        assert c.mail("a@x")[0] == 250
        codes = [c.rcpt(f"r{i}@x")[0] for i in range(101)]
        assert codes == [250] * 100 + [452]
        assert c.data(b"Subject: many\r\n\r\nhi\r\n")[0] == 250
    assert sink.wait_for(1) == 1
    assert len(sink.dump()[0]["to"]) == 100


def test_size_limit_552_and_the_session_goes_on() -> None:
    s = LeanSink("--keep", "--max-size", "100000")
    try:
        small = b"Subject: small\r\n\r\n" + b"y" * 1000 + b"\r\n"
        with s.smtp() as c:
            code, msg = c.ehlo()
            assert c.esmtp_features["size"] == "100000"
            assert c.docmd("MAIL FROM:<a@x> SIZE=100001")[0] == 552          # announced too big
            assert c.docmd("RCPT TO:<b@x>")[0] == 503                        # so no transaction
            assert c.docmd("MAIL FROM:<a@x>")[0] == 250                      # not announced, ...
            assert c.docmd("RCPT TO:<b@x>")[0] == 250
            assert c.docmd("DATA")[0] == 354
            c.send(b"z" * 999 + b"\r\n" + (b"x" * 998 + b"\r\n") * 400)     # ... 400 KB: dropped as it comes
            assert c.docmd(".")[0] == 552
            assert c.docmd("RCPT TO:<b@x>")[0] == 503                        # the transaction is over
            assert c.sendmail("a@x", ["b@x"], small) == {}                   # and the next message is fine
        assert s.wait_for(1) == 1
        assert [d["sha256"] for d in s.dump()] == [_sha(small)]
        assert int(s.ask("bytes")) == len(small)
    finally:
        assert s.close() == 0


def test_stdin_protocol() -> None:
    s = LeanSink()                                            # without --keep: counted, not kept
    try:
        assert (s.ask("count"), s.ask("bytes"), s.ask("dump")) == ("0", "0", "[]")
        with s.smtp() as c:
            c.sendmail("a@x", ["b@x"], b"..12345\r\n")
        assert s.wait_for(1) == 1
        assert (s.ask("bytes"), s.ask("dump")) == ("9", "[]")               # sent as "...12345", unstuffed
        assert s.ask("clear") == "ok"
        assert (s.ask("count"), s.ask("bytes")) == ("0", "0")
        assert s.ask("nonsense").startswith("error")
    finally:
        assert s.close() == 0
    # the end of stdin ends it too
    s = LeanSink()
    assert s.proc.stdin is not None
    s.proc.stdin.close()
    assert s.proc.wait(timeout=10) == 0


# ------------------------------------------------------------------------------------ in this process
class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True


def _run(chunks: list[bytes], max_size: int = leansink.MAX_SIZE) -> tuple[RecordingTransport, object]:
    store = leansink.Store(keep=True, max_size=max_size, pipelining=True)
    proto = leansink.SmtpProtocol(store)
    transport = RecordingTransport()
    proto.connection_made(transport)
    for chunk in chunks:
        if not transport.closed:
            proto.data_received(chunk)
    return transport, store


SESSION = (b"EHLO client\r\nMAIL FROM:<a@x> SIZE=99\r\nRCPT TO:<b@x>\r\nDATA\r\n"
           + DOTS.replace(b"\r\n.", b"\r\n..") + b".\r\n"
           + b"MAIL FROM:<a@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n.\r\n"                       # empty
           + b"MAIL FROM:<a@x>\r\nRCPT TO:<d@x>\r\nDATA\r\n..x\r\n\r\n.\r\n"           # a first line with a dot
           + b"MAIL FROM:<a@x>\r\nRCPT TO:<e@x>\r\nDATA\r\n\r\n.\r\n"                  # one empty line
           + b"VRFY x\r\nRSET\r\nQUIT\r\nNOOP\r\n")


def test_a_session_split_anywhere_is_read_the_same() -> None:
    whole, store = _run([SESSION])
    replies = b"".join(whole.writes)
    assert _replies(replies) == [220, 250, 250, 250, 354, 250] + [250, 250, 354, 250] * 3 + [502, 250, 221]
    assert whole.closed
    kept = [raw for raw, _f, _t in store.kept]
    assert kept == [DOTS, b"", b".x\r\n\r\n", b"\r\n"]
    assert store.bytes == sum(map(len, kept))
    cases = [[SESSION[:k], SESSION[k:]] for k in range(1, len(SESSION))]
    cases.append([SESSION[k:k + 1] for k in range(len(SESSION))])
    rng = random.Random(5321)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(SESSION)), rng.randint(2, 30)))
        cases.append([SESSION[a:b] for a, b in zip([0] + cuts, cuts + [len(SESSION)])])
    for chunks in cases:
        transport, st = _run(chunks)
        assert b"".join(transport.writes) == replies, [len(c) for c in chunks]
        assert [raw for raw, _f, _t in st.kept] == kept, [len(c) for c in chunks]
        assert [t for _r, _f, t in st.kept] == [[b"b@x"], [b"c@x"], [b"d@x"], [b"e@x"]]
        assert transport.closed


def test_replies_to_one_read_go_out_in_one_write() -> None:
    transport, store = _run([b"EHLO c\r\nMAIL FROM:<a@x> SIZE=5 BODY=8BITMIME\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\n"
                             b"DATA\r\n", b"abc\r\n.\r\nMAIL FROM:<a@x>\r\nRCPT TO:<d@x>\r\nDATA\r\n", b"d", b"e",
                             b"\r\n.", b"\r", b"\nQUIT\r\n"])
    # one write per read that completed something; reads that completed nothing wrote nothing
    greeting, group, second, last = transport.writes
    assert _replies(greeting) == [220]
    assert _replies(group) == [250, 250, 250, 250, 354] and group.startswith(b"250-")
    assert _replies(second) == [250, 250, 250, 354]
    assert _replies(last) == [250, 221]
    assert transport.closed
    assert [raw for raw, _f, _t in store.kept] == [b"abc\r\n", b"de\r\n"]


def test_content_beyond_the_limit_is_dropped_in_any_chunks() -> None:
    """Past max_size the content is not held (only the last 4 bytes, which could begin the end marker),
    however it is split; 552 at its end, and the next message is read as usual."""
    big = b"".join(b"line %05d\r\n" % i + b"..dot\r\n" * (i % 3 == 0) for i in range(400))   # ~6 KB
    session = (b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n" + big + b".\r\n"
               + b"MAIL FROM:<a@x>\r\nRCPT TO:<c@x>\r\nDATA\r\nsmall\r\n.\r\nQUIT\r\n")
    start = session.index(big)
    rng = random.Random(2920)
    cases = [[session]] + [[session[:k], session[k:]] for k in range(start + len(big) - 8, start + len(big) + 4)]
    for _ in range(100):   # many small reads, some of 1 to 4 bytes
        cuts = sorted(rng.sample(range(1, len(session)), rng.randint(50, 600)))
        cases.append([session[a:b] for a, b in zip([0] + cuts, cuts + [len(session)])])
    for chunks in cases:
        transport, store = _run(chunks, max_size=1000)
        assert _replies(b"".join(transport.writes)) == [220, 250, 250, 250, 354, 552, 250, 250, 354, 250, 221]
        assert [raw for raw, _f, _t in store.kept] == [b"small\r\n"]
        assert store.count == 1 and store.bytes == 7
