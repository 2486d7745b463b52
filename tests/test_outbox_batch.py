"""The outbox's bookkeeping: limits counted cheaply and exactly."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipeline.store import OutboxItem, Store

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path):
    return Store(f"sqlite:///{tmp_path / 'intake.db'}")


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
