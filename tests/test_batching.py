"""The batched pass: a crash at each point loses nothing and records or sends nothing twice; the progress
callback; the store's batch writes give what one-at-a-time writes gave; the reader's batch."""
from __future__ import annotations

import email
import os
import random
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email import policy
from pathlib import Path

import pytest

from conftest import DISTRICT, Harness
from intake_demo import samplemail
from intake_demo import samples
from pipeline.model import DocumentReading
from pipeline.ledger.messages import RawRecord
from pipeline.ledger.outcomes import DocumentOutcome, OutcomeRecord
from pipeline.ledger.store import Store

BACKENDS = ("sqlite", "postgresql")  # the tests using the ledger run on both (conftest.py)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UBND = "cdcs.ubnd@longbien.gov.vn"
UBND_NAME = "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên"
T0 = datetime(2022, 2, 14, 1, 0, tzinfo=timezone.utc)


def reg_xlsx() -> bytes:
    return samples.registration_xlsx(UBND_NAME, [("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac")])


def poll_cli(h: Harness, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    """A pass as a real process; with ``fault``, one that dies at that checkpoint (tests/crashpass.py)."""
    args = [str(Path(__file__).with_name("crashpass.py")), str(h.cfg_path), fault] if fault else \
        ["-m", "pipeline", "--config", str(h.cfg_path), "poll"]
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=180)


def in_reply_to(h: Harness) -> list[str]:
    return [email.message_from_bytes(m.data if hasattr(m, "data") else m.raw, policy=policy.default)["In-Reply-To"]
            for m in h.smtp.messages]


def deliver_many(h: Harness, n: int, tag: str) -> list[str]:
    ids = [f"<{tag}-{i}@mail.gmail.com>" for i in range(n)]
    for i, mid in enumerate(ids):
        h.deliver(samplemail.gmail_message(UBND, DISTRICT, f"Đăng ký {i}", "x", [(f"dk{i}.xlsx", reg_xlsx(), XLSX)],
                                           message_id=mid))
    return ids


@pytest.mark.parametrize("fault", ["after-archive", "after-outcomes"])
def test_a_crash_in_a_batched_pass_loses_nothing_and_repeats_nothing(intake: Harness, fault: str) -> None:
    ids = deliver_many(intake, 10, fault)  # batch_size is 7 in the tests: two batches
    proc = poll_cli(intake, fault)
    assert proc.returncode == 70, proc.stderr
    states = sorted(m["state"] for m in intake.export()["messages"])
    if fault == "after-archive":
        assert states == ["received"] * 7  # only the first batch was fetched and recorded
    else:
        # the first batch processed; the staging thread may already have archived and recorded the second
        # (as 'received', for the next pass to finish) while the first was processed
        assert states in (["processed"] * 7, ["processed"] * 7 + ["received"] * 3)
    assert intake.smtp.messages == []  # nothing went out before the crash
    # the mark moved with each recorded batch, never past what was recorded
    assert intake.ctx.store.poll_state("INBOX")[1] == len(states)
    assert poll_cli(intake).returncode == 0
    assert poll_cli(intake).returncode == 0
    data = intake.export()
    assert sorted(m["message_id"] for m in data["messages"]) == sorted(ids)
    assert {m["state"] for m in data["messages"]} == {"processed"}
    assert sum(len(m["documents"]) for m in data["messages"]) == 10
    assert sorted(in_reply_to(intake)) == sorted(ids)  # one receipt each
    assert len({r["to"][0] for r in data["outbox"]}) == 1 and len(data["outbox"]) == 10


def test_progress_is_called_once_per_new_message_in_order(intake: Harness) -> None:
    deliver_many(intake, 10, "progress")
    from pipeline.worker.mailpass import run_pass

    calls: list[tuple[int, int]] = []
    s = run_pass(intake.ctx, clock=intake.now, progress=lambda done, total: calls.append((done, total)))
    assert s.states == {"processed": 10} and s.outbox["sent"] == 10
    assert calls == [(i, 10) for i in range(1, 11)]
    calls.clear()
    run_pass(intake.ctx, clock=intake.now, progress=lambda done, total: calls.append((done, total)))
    assert calls == []  # nothing new
    # a broken progress display never costs the pass
    deliver_many(intake, 2, "progress-broken")

    def broken(done: int, total: int) -> None:
        raise RuntimeError("display gone")

    assert run_pass(intake.ctx, clock=intake.now, progress=broken).states == {"processed": 2}


def test_a_failing_batch_transaction_falls_back_to_one_message_at_a_time(intake: Harness,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ids = deliver_many(intake, 5, "fallback")
    real = Store.record_outcomes

    def flaky(self: Store, records, now):  # type: ignore[no-untyped-def]
        if len(records) > 1:
            raise RuntimeError("batch refused")
        if records and records[0].subject.endswith(" 3"):
            raise RuntimeError("this one is bad")
        return real(self, records, now)

    monkeypatch.setattr(Store, "record_outcomes", flaky)
    s = intake.poll()
    assert s.states == {"processed": 4, "error": 1}
    by_id = {m["message_id"]: m for m in intake.export()["messages"]}
    assert by_id[ids[3]]["state"] == "error" and "this one is bad" in by_id[ids[3]]["reason"]
    assert sorted(in_reply_to(intake)) == sorted(ids[:3] + ids[4:])


def test_processed_mail_of_every_batch_is_marked_on_the_server(tmp_path: Path, dovecot, smtp, database,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """With several batches the staging thread owns the IMAP connection; the marks still reach every mail."""
    from conftest import write_config
    from pipeline.config import load_config
    from pipeline.context import Context
    from pipeline.worker.mailpass import run_pass

    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", dovecot.password)
    folder = "Marks"
    for i in range(17):  # three batches of 7
        dovecot.append(samplemail.gmail_message(UBND, DISTRICT, f"Đăng ký {i}", "x", [(f"dk{i}.xlsx", reg_xlsx(), XLSX)],
                                                message_id=f"<mark-{i}@mail.gmail.com>"), folder=folder)
    ctx = Context(load_config(write_config(tmp_path, imap_port=dovecot.port, smtp_port=smtp.port,
                                           mailbox_extra={"folder": folder, "processed_keyword": "IntakeDone"},
                                           database=database)))
    s = run_pass(ctx)
    assert s.new == 17 and s.states == {"processed": 17} and s.error is None
    with dovecot.client() as c:
        c.select_folder(folder, readonly=True)
        flags = c.get_flags(c.search(["ALL"]))
    assert len(flags) == 17 and all(b"IntakeDone" in f and b"\\Seen" not in f for f in flags.values())


def test_a_mailbox_failure_in_a_later_batch_keeps_the_earlier_ones(intake: Harness,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection drops while the staging thread fetches the second batch: the first batch is processed
    and answered, the error is reported, and the next pass takes the rest without repeating anything."""
    from pipeline.errors import MailboxUnavailable
    from pipeline.mail.mailbox import Mailbox

    ids = deliver_many(intake, 16, "drop")
    real_fetch = Mailbox.fetch
    calls = {"n": 0}

    def dropping(self, uids):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise MailboxUnavailable("kết nối IMAP bị ngắt (test)")
        return real_fetch(self, uids)

    monkeypatch.setattr(Mailbox, "fetch", dropping)
    s = intake.poll()
    assert s.error and "bị ngắt" in s.error
    assert s.states == {"processed": 7} and s.outbox["sent"] == 7
    assert intake.ctx.store.poll_state("INBOX")[1] == 7
    monkeypatch.setattr(Mailbox, "fetch", real_fetch)
    s = intake.poll()
    assert s.error is None and s.new == 9 and s.duplicates == 0
    data = intake.export()
    assert sorted(m["message_id"] for m in data["messages"]) == sorted(ids)
    assert {m["state"] for m in data["messages"]} == {"processed"}
    assert sorted(in_reply_to(intake)) == sorted(ids)  # one receipt each


def test_receipts_of_a_batch_leave_before_the_next_batch_is_fetched(intake: Harness,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit whose mail is in the first batch of a backlog is answered before the rest is read."""
    from pipeline.mail.mailbox import Mailbox

    deliver_many(intake, 10, "early")  # two batches: 7 then 3
    real_fetch = Mailbox.fetch
    sent_before_fetch: list[int] = []

    def fetch(self, uids):  # type: ignore[no-untyped-def]
        sent_before_fetch.append(len(intake.smtp.messages))
        return real_fetch(self, uids)

    monkeypatch.setattr(Mailbox, "fetch", fetch)
    s = intake.poll()
    assert s.states == {"processed": 10} and s.outbox["sent"] == 10
    assert sent_before_fetch == [0, 7]


# ------------------------------------------------------------------------------------------- store
def test_record_raw_batch_recognises_duplicates_in_the_batch_and_before_it(db_url: str) -> None:
    st = Store(db_url)
    old, created = st.record_raw(message_id="<a>", sha256="a" * 64, gm_msgid=None, folder="INBOX", uidvalidity=1,
                                 uid=1, size=1, received_at=T0, now=T0)
    assert created
    gm, _ = st.record_raw(message_id="<g>", sha256="g" * 64, gm_msgid=77, folder="INBOX", uidvalidity=1,
                          uid=2, size=1, received_at=T0, now=T0)
    recs = [RawRecord("<a>", "a" * 64, None, 3, 1, T0),        # recorded before
            RawRecord("<b>", "b" * 64, None, 4, 1, T0),        # new
            RawRecord("<b>", "b" * 64, None, 5, 1, T0),        # the same again in this batch
            RawRecord("<other>", "c" * 64, 77, 6, 1, T0),      # same Gmail message in another label
            RawRecord("<d>", "d" * 64, 88, 7, 1, T0),          # new
            RawRecord("<e>", "e" * 64, 88, 8, 1, T0),          # same X-GM-MSGID as the one before it
            RawRecord("<b>", "x" * 64, None, 9, 1, T0)]        # same Message-ID, other bytes: another mail
    out = st.record_raw_batch(recs, folder="INBOX", uidvalidity=1, last_uid=9, now=T0)
    b, d, x = out[1][0], out[4][0], out[6][0]
    assert out == [(old, False), (b, True), (b, False), (gm, False), (d, True), (d, False), (x, True)]
    assert len({old, gm, b, d, x}) == 5
    assert st.poll_state("INBOX") == (1, 9)
    # and the same batch again records nothing
    again = st.record_raw_batch(recs, folder="INBOX", uidvalidity=1, last_uid=9, now=T0)
    assert [c for _pk, c in again] == [False] * 7


def _reading(state: str = "accepted", kind: str = "registration") -> DocumentReading:
    return DocumentReading(kind=kind, period=None, state=state, format="xlsx")


def test_record_outcomes_in_one_transaction_gives_what_one_at_a_time_gave(tmp_path: Path) -> None:
    rng = random.Random(7)
    plan = []
    for i in range(40):
        unit = rng.choice(["u1", "u2"])
        docs = [DocumentOutcome(part=str(j + 2), filename=f"f{i}-{j}.xlsx", content_type=XLSX, sha256="0" * 64,
                                size=1, reading=_reading(rng.choice(["accepted", "accepted", "rejected"]),
                                                         rng.choice(["registration", "summary"])), on_time=None)
                for j in range(rng.randint(0, 2))]
        plan.append((unit, docs, T0 + timedelta(minutes=rng.randint(0, 30))))

    def build(path: Path, batched: bool) -> list[tuple]:
        st = Store(f"sqlite:///{path}")
        pks = [pk for pk, _ in st.record_raw_batch(
            [RawRecord(f"<m{i}>", f"{i:064d}", None, i + 1, 1, at) for i, (_u, _d, at) in enumerate(plan)],
            folder="INBOX", uidvalidity=1, last_uid=len(plan), now=T0)]
        recs = [OutcomeRecord(pk=pk, state="processed", reason=None, sender="a@b", from_name=None, subject="s",
                              unit_id=unit, outcomes=tuple(docs)) for pk, (unit, docs, _at) in zip(pks, plan)]
        if batched:
            for start in range(0, len(recs), 7):
                st.record_outcomes(recs[start:start + 7], T0)
            assert st.record_outcomes(recs[:3], T0) == [[], [], []]  # finished ones are left alone
        else:
            for r in recs:  # one transaction per message
                st.record_outcomes([r], T0)
        snap = st.snapshot()
        return sorted((d.message_pk, d.filename, d.state, d.superseded_by) for ds in snap["documents"].values()
                      for d in ds)

    one = build(tmp_path / "one.sqlite3", batched=False)
    many = build(tmp_path / "many.sqlite3", batched=True)
    assert one == many
    assert any(s is not None for *_x, s in many)  # supersession was exercised
