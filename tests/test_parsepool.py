"""The parse process (pipeline/parsepool.py): the same ParsedMail as parsing in the pass's own process,
for every sample; a child that dies mid-stream costs nothing; a backlog pass uses it end to end."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from conftest import DISTRICT, Harness
from pipeline import mime, parsepool, samplemail, worker
from pipeline.errors import MessageParseError
from pipeline.forms import samples

PEER = Path(__file__).resolve().parents[2] / "shared" / "peer-mail" / "mail-mime-parser"
UBND = "cdcs.ubnd@longbien.gov.vn"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TRUSTED = ("mx.google.com",)


def _messages() -> list[bytes]:
    xlsx = samples.registration_xlsx("Công đoàn cơ quan UBND", [("Tổ Văn phòng", "Một cửa", "khac")])
    built = [
        samplemail.gmail_message(UBND, DISTRICT, "Đăng ký Dân vận khéo", "x", [("Biểu đăng ký.xlsx", xlsx, XLSX)],
                                 message_id="<pool-1@mail.gmail.com>"),
        samplemail.outlook_message(UBND, DISTRICT, "Báo cáo quý I", "x", [("Báo cáo.xlsx", xlsx, XLSX)]),
        samplemail.spoofed(UBND, DISTRICT, "Giả mạo", "x", []),
        samplemail.bounce(samplemail.gmail_message(UBND, DISTRICT, "x", "y"), "nobody@x.vn"),
    ]
    peer = [p.read_bytes() for p in sorted(PEER.glob("*.txt"))] if PEER.is_dir() else []
    return built + peer + [b"", b"   \r\n", b"no header block at all"]


def _inline(raw: bytes):
    try:
        return mime.parse_message(raw, trusted_authserv_ids=TRUSTED)
    except MessageParseError as exc:
        return ("MessageParseError", str(exc))


def _pooled(ticket: parsepool.Ticket):
    try:
        return ticket.result()
    except MessageParseError as exc:
        return ("MessageParseError", str(exc))


def test_the_parse_process_gives_what_parsing_here_gives():
    pool = parsepool.ParsePool()
    try:
        raws = _messages()
        tickets = pool.submit(raws, TRUSTED)
        assert pool._proc is not None and pool._proc.poll() is None  # a real child is doing it
        assert [_pooled(t) for t in tickets] == [_inline(r) for r in raws]
        assert not pool._broken
        assert _pooled(tickets[0]).from_addr == UBND
        assert _pooled(pool.submit([b""])[0])[0] == "MessageParseError"
    finally:
        pool.close()


def test_a_child_that_dies_mid_stream_costs_nothing():
    pool = parsepool.ParsePool()
    try:
        raws = _messages()
        tickets = pool.submit(raws, TRUSTED)
        assert _pooled(tickets[0]) == _inline(raws[0])
        assert pool._proc is not None
        pool._proc.send_signal(signal.SIGKILL)
        pool._proc.wait()
        # what was answered before the kill and what was lost with it: the same results either way
        assert [_pooled(t) for t in tickets[1:]] == [_inline(r) for r in raws[1:]]
        assert pool._broken
        later = pool.submit(raws[:2], TRUSTED)  # a broken pool parses in the caller's process
        assert [_pooled(t) for t in later] == [_inline(r) for r in raws[:2]]
    finally:
        pool.close()


def test_a_backlog_pass_parses_in_the_parse_process(intake: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 7 (the tests' batch_size), 3 batches: each handed to the parse process when staged."""
    monkeypatch.setattr(worker, "PARSE_PROCESS_MIN", 2)
    handed: list[int] = []
    real_submit = parsepool.ParsePool.submit

    def counting(self, raws, trusted=()):  # type: ignore[no-untyped-def]
        raws = list(raws)
        handed.append(len(raws))
        return real_submit(self, raws, trusted)

    monkeypatch.setattr(parsepool.ParsePool, "submit", counting)
    xlsx = samples.registration_xlsx("Công đoàn cơ quan Ủy ban nhân dân quận Long Biên",
                                     [("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac")])
    ids = [f"<backlog-{i}@mail.gmail.com>" for i in range(17)]
    for i, mid in enumerate(ids):
        intake.deliver(samplemail.gmail_message(UBND, DISTRICT, f"Đăng ký {i}", "x", [(f"dk{i}.xlsx", xlsx, XLSX)],
                                                message_id=mid))
    intake.deliver(samplemail.gmail_message("stranger@example.com", DISTRICT, "Lạ", "x",
                                            message_id="<stranger@mail.gmail.com>"))
    s = intake.poll()
    assert handed == [7, 7, 4]
    assert s.states == {"processed": 17, "quarantined": 1} and s.outbox["sent"] == 17
    data = intake.export()
    by_id = {m["message_id"]: m for m in data["messages"]}
    assert sorted(by_id) == sorted(ids + ["<stranger@mail.gmail.com>"])
    assert all(by_id[mid]["documents"][0]["state"] == "accepted" for mid in ids)
    assert by_id["<stranger@mail.gmail.com>"]["state"] == "quarantined"
    assert parsepool.pool()._proc is not None and not parsepool.pool()._broken


def test_a_discarded_ticket_is_dropped_and_the_others_still_come():
    pool = parsepool.ParsePool()
    try:
        raws = _messages()[:4]
        tickets = pool.submit(raws, TRUSTED)
        tickets[1].discard()
        tickets[2].discard()
        assert _pooled(tickets[3]) == _inline(raws[3])  # read past the two dropped replies
        assert _pooled(tickets[0]) == _inline(raws[0])
        assert not pool._unwanted and not pool._done and not pool._broken
    finally:
        pool.close()
