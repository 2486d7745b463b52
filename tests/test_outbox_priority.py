"""The outbox's order and budget (pure of servers, on a real ledger): receipts before alerts before reminders
before reports; reminders and reports keep off the part of the day kept for receipts; a recheck drops or
rewrites an item just before it leaves; the forecast of departures follows the same rules."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.ledger.outbox import OutboxItem
from pipeline.ledger.store import Store
from pipeline.outbox.forecast import Waiting, forecast, summary
from pipeline.outbox.send import SEND, Verdict, flush_outbox
from test_outbox_sending import FakeTransport

NOW = datetime(2022, 2, 20, 1, 0, tzinfo=timezone.utc)
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture
def store(db_url):
    return Store(db_url)


def _cfg(per_minute=10_000, per_day=100_000, reserve=0):
    return SimpleNamespace(per_minute=per_minute, per_day=per_day, receipt_reserve=reserve,
                           sender="Intake <intake@so.example.vn>")


def _put(store: Store, key: str, purpose: str, to: str, at: datetime = NOW) -> None:
    store.enqueue(OutboxItem(key=key, purpose=purpose, recipients=(to,), subject=key, smtp_message_id=f"<{key}@x>",
                             raw=f"Subject: {key}\r\n\r\nx\r\n".encode()), at)


def test_what_a_person_waits_for_leaves_first(store):
    _put(store, "report", "report", "staff@x")
    _put(store, "rem1", "reminder", "u1@x")
    _put(store, "alert", "alert", "staff2@x")
    _put(store, "rem2", "reminder", "u2@x")
    _put(store, "receipt", "receipt", "u3@x", NOW + timedelta(seconds=30))
    _put(store, "notice", "notice", "u4@x", NOW + timedelta(seconds=40))
    t = FakeTransport()
    flush_outbox(store, _cfg(), NOW + timedelta(minutes=1), transport_factory=t)
    assert t.sent == [("u3@x",), ("u4@x",), ("staff2@x",), ("u1@x",), ("u2@x",), ("staff@x",)]


def test_a_receipt_queued_during_a_flush_overtakes_the_reminders_still_waiting(store):
    for i in range(3):
        _put(store, f"rem{i}", "reminder", f"u{i}@x")

    def fate(i, to):
        if i == 0:  # while the first reminder is on the wire, a pass records a unit's mail
            _put(store, "receipt", "receipt", "unit@x")

    t = FakeTransport(fate)
    flush_outbox(store, _cfg(), NOW, transport_factory=t)
    assert t.sent == [("u0@x",), ("unit@x",), ("u1@x",), ("u2@x",)]


def test_reminders_keep_off_the_days_reserve_for_receipts(store):
    for i in range(5):
        _put(store, f"rem{i}", "reminder", f"u{i}@x")
    t = FakeTransport()
    got = flush_outbox(store, _cfg(per_day=6, reserve=3), NOW, transport_factory=t)
    assert got["sent"] == 3 and got["waiting"] == 2
    for i in range(3):
        _put(store, f"rec{i}", "receipt", f"r{i}@x")
    got = flush_outbox(store, _cfg(per_day=6, reserve=3), NOW + timedelta(minutes=5), transport_factory=t)
    assert got["sent"] == 3 and got["waiting"] == 2  # the three receipts, in the reserve; reminders wait
    assert [to[0][0] for to in t.sent[3:]] == ["r", "r", "r"]
    # 24 hours after the reminders left, the receipts still count: the day's room is still the reserve.
    got = flush_outbox(store, _cfg(per_day=6, reserve=3), NOW + timedelta(days=1, seconds=1), transport_factory=t)
    assert got["sent"] == 0 and got["waiting"] == 2
    # Once the receipts' hour has passed too, the waiting reminders leave.
    got = flush_outbox(store, _cfg(per_day=6, reserve=3), NOW + timedelta(days=1, minutes=6), transport_factory=t)
    assert got["sent"] == 2 and got["waiting"] == 0


def test_a_recheck_drops_or_rewrites_an_item_just_before_it_leaves(store):
    for i in range(3):
        _put(store, f"rem{i}", "reminder", f"u{i}@x")
    seen = []

    def recheck(row, now):
        seen.append(row.key)
        if row.key == "rem0":
            return Verdict("drop", reason="đơn vị đã gửi")
        if row.key == "rem1":
            return Verdict("rewrite", subject="mới", message_id="<new@x>", raw=b"Subject: new\r\n\r\ny\r\n")
        return SEND

    t = FakeTransport()
    got = flush_outbox(store, _cfg(per_minute=1), NOW, transport_factory=t, recheck=recheck)
    assert got == {"sent": 1, "retry": 0, "failed": 0, "dropped": 1, "waiting": 1}
    rows = {r.key: r for r in store.outbox_rows()}
    assert rows["rem0"].state == "dropped" and rows["rem0"].last_error == "đơn vị đã gửi"
    assert rows["rem1"].state == "sent" and rows["rem1"].raw.startswith(b"Subject: new")
    assert rows["rem1"].smtp_message_id == "<new@x>" and rows["rem1"].subject == "mới"
    assert rows["rem2"].state == "pending" and seen == ["rem0", "rem1"]  # the limit: rem2 is not even looked at


def test_forecast_follows_order_limits_and_reserve():
    start = NOW
    waiting = ([Waiting(i, "reminder", start, start) for i in range(300)]
               + [Waiting(1000 + i, "receipt", start + timedelta(minutes=3 * i), start + timedelta(minutes=3 * i))
                  for i in range(10)])
    got = forecast(waiting, [], start, per_minute=20, per_day=400, reserve=160)
    by_id = {d.item.id: d for d in got}
    assert all(by_id[1000 + i].wait <= timedelta(minutes=1) for i in range(10))
    s = summary(got)
    assert s["receipt"]["count"] == 10 and s["reminder"]["count"] == 300
    today = [d for d in got if d.item.purpose == "reminder" and d.at < start + timedelta(days=1)]
    # per_day 400 less the 160 kept for receipts, shared with the receipts that left meanwhile
    last = max(d.at for d in today)
    assert len(today) + sum(1 for d in got if d.item.purpose == "receipt" and d.at <= last) == 240
    tomorrow = [d for d in got if d.item.purpose == "reminder" and d.at >= start + timedelta(days=1)]
    assert len(today) + len(tomorrow) == 300 and min(d.at for d in tomorrow) == start + timedelta(days=1)
    # 20 a minute: the 240 of today take 12 minutes (receipts slip in ahead of them)
    assert max(d.at for d in today) <= start + timedelta(minutes=13)


def test_forecast_counts_what_was_already_sent_in_the_last_day():
    sent = [NOW - timedelta(hours=23, minutes=59 - i) for i in range(10)]
    got = forecast([Waiting(1, "reminder", NOW, NOW)], sent, NOW, per_minute=20, per_day=10, reserve=0)
    assert got[0].at == sent[0] + timedelta(days=1)
    got = forecast([Waiting(1, "reminder", NOW, NOW)], sent * 100, NOW, per_minute=20, per_day=10, reserve=0)
    assert got[0].at is not None  # the 24-hour window always moves on


def _smtp_config(tmp_path, smtp_extra):
    import yaml
    (tmp_path / "units.csv").write_text("unit_id,name,group,emails\n", encoding="utf-8")
    smtp = {"host": "smtp.gmail.com", "port": 465, "security": "ssl", "username": "x@gmail.com",
            "password_env": "X_PW", "sender": "LĐLĐ <ldld@gmail.com>", **smtp_extra}
    cfg = {"organisation": "Liên đoàn Lao động quận Long Biên", "year": 2022, "timezone": "Asia/Ho_Chi_Minh",
           "mailbox": {"host": "imap.gmail.com", "username": "x@gmail.com", "password_env": "X_PW"},
           "smtp": smtp, "storage": {"database": "db.sqlite3", "archive": "archive"}, "units": "units.csv",
           "staff": ["staff@example.org"]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return load_config(path).smtp


def test_daily_limits_default_to_the_account_kind(tmp_path):
    gmail = _smtp_config(tmp_path, {})
    assert (gmail.per_day, gmail.receipt_reserve) == (400, 100)
    workspace = _smtp_config(tmp_path, {"sender": "LĐLĐ quận <vanphong@ldld-longbien.vn>"})
    assert (workspace.per_day, workspace.receipt_reserve) == (1800, 450)
    mine = _smtp_config(tmp_path, {"per_day": 300, "reserve_for_receipts": 200})
    assert (mine.per_day, mine.receipt_reserve) == (300, 200)
    with pytest.raises(ConfigError, match="reserve_for_receipts"):
        _smtp_config(tmp_path, {"per_day": 100, "reserve_for_receipts": 100})


def test_an_item_that_cannot_be_checked_waits_and_the_others_leave(store):
    for i in range(3):
        _put(store, f"rem{i}", "reminder", f"u{i}@x")

    def recheck(row, now):
        if row.key == "rem0":
            raise OSError("the blank form's file is gone")
        return SEND

    t = FakeTransport()
    got = flush_outbox(store, _cfg(), NOW, transport_factory=t, recheck=recheck)
    assert got["sent"] == 2 and t.sent == [("u1@x",), ("u2@x",)]
    row = next(r for r in store.outbox_rows() if r.key == "rem0")
    assert row.state == "pending" and row.next_attempt_at > (NOW + timedelta(minutes=59)).isoformat()


def test_a_rewrite_goes_to_the_units_addresses_as_they_are_now(store):
    _put(store, "rem", "reminder", "old@x")
    t = FakeTransport()
    flush_outbox(store, _cfg(), NOW, transport_factory=t,
                 recheck=lambda row, now: Verdict("rewrite", subject="s", message_id="<m@x>", raw=b"Subject: s\r\n\r\n",
                                                  recipients=("new@x", "second@x")))
    assert t.sent == [("new@x", "second@x")]
    assert store.outbox_rows()[0].recipients == '["new@x", "second@x"]'


def test_a_send_refused_before_reaching_the_server_is_not_left_sending(store):
    from pipeline.errors import ConfigError

    _put(store, "rec", "receipt", "u@x")

    def fate(i, to):
        raise ConfigError("biến môi trường INTAKE_SMTP_PASSWORD chưa được đặt")

    with pytest.raises(ConfigError):
        flush_outbox(store, _cfg(), NOW, transport_factory=FakeTransport(fate))
    row = store.outbox_rows()[0]
    assert row.state == "pending" and "INTAKE_SMTP_PASSWORD" in row.last_error  # surely not sent: goes again


def test_settling_leaves_the_live_workers_claims_alone(store):
    for i in range(3):
        _put(store, f"rec{i}", "receipt", f"u{i}@x")
    assert store.claim_outbox(1, NOW, claimed_by="host:1:dead")
    assert store.claim_outbox(2, NOW, claimed_by="host:2:live")
    assert store.claim_outbox(3, NOW)  # a claim from before claims were signed
    later = NOW + timedelta(minutes=5)
    assert [r.id for r in store.interrupted_sends(later, live=["host:2:live"])] == [1, 3]
    assert [r.id for r in store.interrupted_sends(NOW - timedelta(seconds=1), live=[])] == []
    # a claimant marks only its own claim: one settled meanwhile is not overwritten
    assert store.settle_send(1, "pending", "gửi lại", later)
    store.finish_outbox(1, "sent", later)
    assert store.outbox_rows()[0].state == "pending"


def test_the_sent_folder_is_looked_up_only_in_the_account_that_sends(tmp_path):
    import yaml

    def cfg(smtp: dict, mailbox: dict):
        (tmp_path / "units.csv").write_text("unit_id,name,group,emails\n", encoding="utf-8")
        data = {"organisation": "Liên đoàn Lao động quận Long Biên", "year": 2022, "timezone": "Asia/Ho_Chi_Minh",
                "mailbox": {"host": "imap.gmail.com", "username": "ldld@gmail.com", "password_env": "X", **mailbox},
                "smtp": {"host": "smtp.gmail.com", "username": "ldld@gmail.com", "password_env": "X",
                         "sender": "LĐLĐ <ldld@gmail.com>", **smtp},
                "storage": {"database": "db.sqlite3", "archive": "archive"}, "units": "units.csv", "staff": []}
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        return load_config(path).smtp.sent_folder

    assert cfg({}, {}) == "auto"  # one Gmail account reads and sends: its "[Gmail]/Sent Mail" holds the copies
    assert cfg({"username": "other@gmail.com"}, {}) is None  # copies land in another account's folder
    assert cfg({}, {"host": "mail.example.vn"}) is None
    assert cfg({"sent_folder": "none"}, {}) is None
    assert cfg({"sent_folder": "Đã gửi"}, {"host": "mail.example.vn"}) == "Đã gửi"
