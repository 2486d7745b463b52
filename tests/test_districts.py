"""Districts side by side on one PostgreSQL database (issue 14): two config files with the same database URL
and different ``district``, each with its own mailbox (one Dovecot, two users: the same UIDs in both),
its own SMTP account (two SMTP servers) and its own ledger schema. Nothing is shared but the server:
each district gets all of its mail, a mail sent to both is handled by both, receipts and reminders leave
through the district's own SMTP account, a unit id known to both is two units, and jobs are kept apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator
from zoneinfo import ZoneInfo

import pytest

from conftest import write_config
from intake_demo import samplemail, samples
from pipeline.config import load_config
from pipeline.context import Context
from pipeline.worker import jobs, schedule
from pipeline.worker.mailpass import run_pass
from servers import Dovecot, SmtpSink

pytestmark = pytest.mark.servers

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
WHEN = datetime(2022, 2, 21, 9, 15, tzinfo=TZ)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UBND = "cdcs.ubnd@longbien.gov.vn"
AIMO = "thaimo.longbien@gmail.com"
MAYDG = "congdoan@maydg.com.vn"
NAMES = {UBND: "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên", AIMO: "Công đoàn Trường Tiểu học Ái Mộ",
         MAYDG: "Công đoàn Công ty Cổ phần May Đức Giang"}


@dataclass
class District:
    name: str
    address: str
    cfg_path: Path
    ctx: Context
    smtp: SmtpSink


def registration(sender: str, to: str, message_id: str) -> bytes:
    xlsx = samples.registration_xlsx(NAMES[sender], [("Tổ Văn phòng", "Một cửa thân thiện", "khac")])
    return samplemail.gmail_message(sender, to, "Đăng ký Dân vận khéo 2022", "x", [("dk.xlsx", xlsx, XLSX)],
                                    message_id=message_id)


@pytest.fixture
def city(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Dovecot, District, District]]:
    users = {"quan.a@example.org": "pw-a", "quan.b@example.org": "pw-b"}
    with Dovecot(user="quan.a@example.org", password="pw-a", extra_users=users) as dovecot, \
            SmtpSink() as smtp_a, SmtpSink() as smtp_b:
        districts = []
        for name, user, smtp in (("quan_a", "quan.a@example.org", smtp_a), ("quan_b", "quan.b@example.org", smtp_b)):
            env = f"PW_{name.upper()}"
            monkeypatch.setenv(env, users[user])
            folder = tmp_path / name
            folder.mkdir()
            path = write_config(folder, imap_port=dovecot.port, smtp_port=smtp.port, database=(pg_url, name),
                                mailbox_extra={"username": user, "password_env": env},
                                smtp_extra={"sender": f"LĐLĐ {name} <{user}>"})
            districts.append(District(name, user, path, Context(load_config(path)), smtp))
        yield dovecot, districts[0], districts[1]
        for d in districts:
            d.ctx.store.engine.dispose()


def _deliver(dovecot: Dovecot, user: str, raws: list[bytes]) -> None:
    with dovecot.client(user=user) as c:
        for raw in raws:
            c.append("INBOX", raw, msg_time=WHEN)


def test_two_districts_on_one_database_keep_everything_apart(city: tuple[Dovecot, District, District]) -> None:
    dovecot, a, b = city
    shared_raw = registration(UBND, f"{a.address}, {b.address}", "<both@mail.gmail.com>")
    # UID 1 in both mailboxes is the mail sent to both (the same bytes: one Message-ID, one content hash);
    # UIDs 2 and 3 are each district's own
    _deliver(dovecot, a.address, [shared_raw, registration(AIMO, a.address, "<a2@mail.gmail.com>"),
                                  registration(MAYDG, a.address, "<a3@mail.gmail.com>")])
    _deliver(dovecot, b.address, [shared_raw, registration(AIMO, b.address, "<b2@mail.gmail.com>"),
                                  samplemail.gmail_message("nguoi.la@yahoo.com", b.address, "Hỏi", "x",
                                                           message_id="<b3@mail.yahoo.com>")])

    for d in (a, b):
        summary = run_pass(d.ctx)
        assert summary.error is None and (summary.fetched, summary.new) == (3, 3), d.name
        assert d.ctx.store.poll_state("INBOX")[1] == 3  # each district's own high-water mark

    got = {d.name: {m.message_id: m.state for m in d.ctx.store.snapshot()["messages"]} for d in (a, b)}
    assert got["quan_a"] == {"<both@mail.gmail.com>": "processed", "<a2@mail.gmail.com>": "processed",
                             "<a3@mail.gmail.com>": "processed"}
    assert got["quan_b"]["<both@mail.gmail.com>"] == "processed" and got["quan_b"]["<b2@mail.gmail.com>"] == "processed"
    assert set(got["quan_b"]) == {"<both@mail.gmail.com>", "<b2@mail.gmail.com>", "<b3@mail.yahoo.com>"}

    # receipts through each district's own SMTP account, from its own address
    def receipts(d: District) -> list[tuple[str, str]]:
        return sorted((m.rcpt_tos[0], m.parsed()["In-Reply-To"]) for m in d.smtp.messages)
    assert receipts(a) == sorted([(UBND, "<both@mail.gmail.com>"), (AIMO, "<a2@mail.gmail.com>"),
                                  (MAYDG, "<a3@mail.gmail.com>")])
    assert receipts(b) == sorted([(UBND, "<both@mail.gmail.com>"), (AIMO, "<b2@mail.gmail.com>")])
    assert {m.mail_from for m in a.smtp.messages} == {a.address}
    assert {m.mail_from for m in b.smtp.messages} == {b.address}

    # one unit id, two units: dn027 has registered in district A only
    def registered(d: District) -> set[str]:
        return {r.unit_id for r in d.ctx.store.document_records() if r.state == "accepted"}
    assert registered(a) == {"cq001", "th014", "dn027"}
    assert registered(b) == {"cq001", "th014"}

    # reminders: each district's own, through its own account
    for d in (a, b):
        d.smtp.clear()
        jobs.run_job("remind", d.cfg_path, datetime(2022, 2, 23, 2, 30, tzinfo=timezone.utc))

    def reminded(d: District) -> set[str]:
        return {r.unit_id for r in d.ctx.store.outbox_rows("reminder")}
    assert reminded(a) == {"peer1", "peer2"}
    assert reminded(b) == {"dn027", "peer1", "peer2"}
    assert MAYDG in {m.rcpt_tos[0] for m in b.smtp.messages}
    assert MAYDG not in {m.rcpt_tos[0] for m in a.smtp.messages}
    assert {m.mail_from for m in a.smtp.messages} <= {a.address}
    assert {m.mail_from for m in b.smtp.messages} <= {b.address}


def test_two_districts_keep_their_own_jobs_under_the_same_ids(city: tuple[Dovecot, District, District]) -> None:
    _dovecot, a, b = city
    now = datetime.now(timezone.utc)
    for d in (a, b):
        cfg = load_config(d.cfg_path)
        sched = schedule.build_scheduler(cfg, d.cfg_path, scheduler_cls=schedule.background_cls(), now=now)
        sched.start(paused=True)
        sched.shutdown(wait=True)
    stored = {d.name: schedule.persisted_jobs(d.ctx.cfg.database_url) for d in (a, b)}
    assert {"poll", "remind", "digest"} <= set(stored["quan_a"]) and {"poll", "remind", "digest"} <= set(stored["quan_b"])
    # dropping district A's jobs leaves B's where they were
    assert set(schedule._drop_stale_jobs(a.ctx.cfg.database_url, set())) == set(stored["quan_a"])
    assert set(schedule.persisted_jobs(a.ctx.cfg.database_url)) == set()
    assert set(schedule.persisted_jobs(b.ctx.cfg.database_url)) == set(stored["quan_b"])


def test_a_second_mailbox_on_a_district_ledger_is_refused_until_rebound(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Two configs on one ledger (a forgotten `district:`, one SQLite file) would share one UID high-water mark
    and skip each other's mail: the ledger serves the first mailbox that opened it, and says so."""
    import yaml

    from pipeline import cli
    from pipeline.context import bind_mailbox
    from pipeline.errors import ConfigError

    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    first = write_config(tmp_path / "a", imap_port=1, smtp_port=2)
    ctx = Context(load_config(first))
    bind_mailbox(ctx.store, ctx.cfg)  # as the first district's worker (or a pass) does before reading mail
    second = write_config(tmp_path / "b", imap_port=1, smtp_port=2,
                          mailbox_extra={"username": "hoankiem@example.org"})
    data = yaml.safe_load(second.read_text(encoding="utf-8"))
    data["storage"]["database"] = str(tmp_path / "a" / "db" / "intake.sqlite3")  # the first district's ledger
    second.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match="đang phục vụ hộp thư district@example.org@127.0.0.1") as err:
        Context(load_config(second))
    assert "district:" in str(err.value) and "intake db rebind" in str(err.value)
    assert cli.main(["--config", str(second), "status"]) == 2  # every command refuses, in Vietnamese
    assert "đang phục vụ hộp thư" in capsys.readouterr().err
    # The district really changed its mailbox: one command, and the ledger serves the new one.
    assert cli.main(["--config", str(second), "db", "rebind"]) == 0
    assert "từ nay phục vụ hộp thư hoankiem@example.org@127.0.0.1" in capsys.readouterr().out
    Context(load_config(second))
    with pytest.raises(ConfigError):
        Context(load_config(first))
