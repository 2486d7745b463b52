"""flush_outbox: each item claimed ('sending') before it is handed to SMTP and marked after it.

"Never sent twice": an item left 'sending' by a crash becomes 'uncertain' for staff and is never resent by
itself; each item gets its own outcome; the per-minute/per-day limits are exact. The transport here is a
recording stand-in: what matters is the outbox's states in a real database (SQLite and PostgreSQL) (the real SMTP path is
covered by tests/test_smtp.py and, through whole passes, tests/test_spine.py).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from pipeline.errors import SmtpRejected, SmtpUnavailable
from pipeline.outbox.send import RETRY_DELAYS, flush_outbox
from pipeline.ledger.outbox import OutboxItem
from pipeline.ledger.schema import from_iso
from pipeline.ledger.store import Store

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)


BACKENDS = ("sqlite", "postgresql")  # every test here runs on both (conftest.py)


@pytest.fixture
def store(db_url):
    return Store(db_url)


def _enqueue(store: Store, n: int, now: datetime = NOW) -> None:
    for i in range(n):
        store.enqueue(OutboxItem(key=f"k{i}", purpose="receipt", recipients=(f"u{i}@example.vn",), subject="s",
                                 smtp_message_id=f"<{i}@x>", raw=b"Subject: s\r\n\r\nx\r\n"), now)


def test_sent_since_counts_up_to_its_limit(store):
    _enqueue(store, 30)
    for oid in range(1, 21):
        assert store.claim_outbox(oid, NOW)
        store.finish_outbox(oid, "sent", NOW - timedelta(seconds=30 * (oid % 3)))  # 0, 30 or 60 s ago
    minute = NOW - timedelta(seconds=45)
    assert store.sent_since(minute) == 13
    assert [store.sent_since(minute, limit=n) for n in (0, 5, 13, 14, 100)] == [0, 5, 13, 13, 13]
    assert store.sent_since(NOW - timedelta(days=1), limit=10_000) == 20


class FakeTransport:
    """Records what is sent; ``fate(i, recipients)`` may raise for the i-th send."""

    def __init__(self, fate=lambda i, to: None):
        self.sent: list[tuple[str, ...]] = []
        self.fate = fate
        self.closed = 0

    def __call__(self, _cfg):
        return self

    def send(self, raw, sender, recipients):
        self.fate(len(self.sent), recipients)
        self.sent.append(tuple(recipients))

    def close(self):
        self.closed += 1


def _cfg(per_minute=10_000, per_day=100_000):
    return SimpleNamespace(per_minute=per_minute, per_day=per_day, receipt_reserve=0, sender="Intake <intake@so.example.vn>")


def _states(store):
    return [(r.id, r.state, r.attempts) for r in store.outbox_rows()]


def test_each_item_is_claimed_before_it_is_sent_and_marked_after(store):
    _enqueue(store, 5)
    seen = []

    def fate(i, to):
        seen.append([s for _, s, _a in _states(store)])  # the database while SMTP has the item

    t = FakeTransport(fate)
    assert flush_outbox(store, _cfg(), NOW, transport_factory=t) == {"sent": 5, "retry": 0, "failed": 0,
                                                                      "dropped": 0, "waiting": 0}
    assert seen == [["sent"] * i + ["sending"] + ["pending"] * (4 - i) for i in range(5)]
    assert _states(store) == [(i, "sent", 1) for i in range(1, 6)]
    assert store.sent_since(NOW - timedelta(seconds=1)) == 5
    assert flush_outbox(store, _cfg(), NOW, transport_factory=t)["sent"] == 0 and len(t.sent) == 5


@pytest.mark.parametrize("per_minute,already", [(7, 0), (12, 5)])
def test_limits_stay_exact(store, per_minute, already):
    _enqueue(store, 20)
    t = FakeTransport()
    if already:
        assert flush_outbox(store, _cfg(per_minute=already), NOW, transport_factory=t)["sent"] == already
    got = flush_outbox(store, _cfg(per_minute=per_minute), NOW, transport_factory=t)
    assert got["sent"] == per_minute - already and got["waiting"] == 20 - per_minute
    assert len(t.sent) == store.sent_since(NOW - timedelta(minutes=1)) == per_minute
    assert {s for _, s, _a in _states(store)} == {"sent", "pending"}
    assert {a for _, s, a in _states(store) if s == "pending"} == {0}  # the waiting ones were never claimed
    got = flush_outbox(store, _cfg(per_minute=per_minute, per_day=per_minute + 3), NOW + timedelta(minutes=2),
                       transport_factory=t)
    assert got["sent"] == 3 and len(t.sent) == per_minute + 3


def test_each_item_gets_its_own_outcome(store):
    _enqueue(store, 6)

    def fate(i, to):
        if tuple(to) == ("u1@example.vn",):
            raise SmtpRejected("550 no such user")
        if tuple(to) == ("u3@example.vn",):
            raise SmtpUnavailable("421 try later")

    t = FakeTransport(fate)
    got = flush_outbox(store, _cfg(), NOW, transport_factory=t)
    assert got == {"sent": 4, "retry": 1, "failed": 1, "dropped": 0, "waiting": 0}
    rows = {r.id: r for r in store.outbox_rows()}
    assert [rows[i].state for i in range(1, 7)] == ["sent", "failed", "sent", "pending", "sent", "sent"]
    assert "550" in rows[2].last_error and "421" in rows[4].last_error and rows[1].last_error is None
    assert from_iso(rows[4].next_attempt_at) == NOW + timedelta(seconds=RETRY_DELAYS[0])
    assert rows[1].sent_at is not None and rows[2].sent_at is None and rows[4].sent_at is None
    assert t.closed >= 1  # the connection is dropped after a temporary failure


def test_an_error_mid_send_leaves_only_that_item_uncertain_and_nothing_is_sent_twice(store):
    _enqueue(store, 10)

    def fate(i, to):
        if i == 3:
            raise RuntimeError("connection died in an unexpected way")

    t = FakeTransport(fate)
    with pytest.raises(RuntimeError):
        flush_outbox(store, _cfg(), NOW, transport_factory=t)
    states = _states(store)
    assert [s for _, s, _a in states] == ["sent"] * 3 + ["sending"] + ["pending"] * 6
    assert [a for *_, a in states] == [1] * 4 + [0] * 6  # the ones after it were not attempted
    assert [r.id for r in store.interrupted_sends(NOW)] == [4]
    assert store.settle_send(4, "uncertain", "không rõ thư đã đi chưa", NOW)
    t.fate = lambda i, to: None
    assert flush_outbox(store, _cfg(), NOW, transport_factory=t)["sent"] == 6
    assert len(t.sent) == 9 and len(set(t.sent)) == 9  # item 4 (uncertain) is left to staff, nothing twice
    assert [s for _, s, _a in _states(store)].count("uncertain") == 1


def test_a_crash_after_the_claim_leaves_the_item_uncertain(store):
    _enqueue(store, 3)
    assert store.claim_outbox(1, NOW)
    assert not store.claim_outbox(1, NOW)  # only one claimant wins
    # ... the worker dies here, before SMTP has answered ...
    # A claim younger than the grace period may be a live sender's: nobody touches it (settle.py waits).
    assert store.interrupted_sends(NOW - timedelta(seconds=1)) == []
    [row] = store.interrupted_sends(NOW)
    assert store.settle_send(row.id, "uncertain", "check the Sent folder", NOW)
    assert not store.settle_send(row.id, "pending", "twice", NOW)  # settled once
    t = FakeTransport()
    assert flush_outbox(store, _cfg(), NOW, transport_factory=t)["sent"] == 2
    assert t.sent == [("u1@example.vn",), ("u2@example.vn",)]
    assert [s for _, s, _a in _states(store)] == ["uncertain", "sent", "sent"]
    row = store.outbox_rows()[0]
    assert "check the Sent folder" in row.last_error


def test_an_item_claimed_by_another_sender_is_left_to_it(store, monkeypatch):
    _enqueue(store, 3)
    next_due = store.next_due

    def next_then_claimed_elsewhere(now, **kw):
        row = next_due(now, **kw)
        if row is not None and row.id == 2:
            assert store.claim_outbox(2, now)  # another worker got there between the query and our claim
        return row

    monkeypatch.setattr(store, "next_due", next_then_claimed_elsewhere)
    t = FakeTransport()
    assert flush_outbox(store, _cfg(), NOW, transport_factory=t)["sent"] == 2
    assert t.sent == [("u0@example.vn",), ("u2@example.vn",)]
    assert [s for _, s, _a in _states(store)] == ["sent", "sending", "sent"]


def test_a_server_that_cannot_be_reached_ends_the_flush_and_the_rest_waits_unclaimed(store):
    """Each item would otherwise pay the connection timeout in turn (minutes per flush with the worker's
    one-job lock held) and gain a retry delay for a fault that is the server's."""
    _enqueue(store, 4)

    def unreachable(i, to):
        raise SmtpUnavailable("không kết nối được máy chủ SMTP")

    got = flush_outbox(store, _cfg(), NOW, transport_factory=FakeTransport(unreachable))
    assert got == {"sent": 0, "retry": 1, "failed": 0, "dropped": 0, "waiting": 3}
    rows = {r.key: r for r in store.outbox_rows()}
    assert (rows["k0"].state, rows["k0"].attempts) == ("pending", 1)
    assert [(rows[k].state, rows[k].attempts, rows[k].last_error) for k in ("k1", "k2", "k3")] == \
        [("pending", 0, None)] * 3
