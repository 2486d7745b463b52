"""Campaigns over the years, end to end on the real Dovecot and SMTP servers.

A mailbox with years of history (2019, 2021, January 2022) and this year's mail; then the office moves to
2023 by changing `year`, and 2022's late mail keeps counting for 2022.
"""
from __future__ import annotations

import email
import json
from datetime import datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import yaml

from conftest import DISTRICT, Harness
from intake_demo import samplemail, samples
from pipeline import cli
from pipeline.config import load_config
from pipeline.context import Context
from pipeline.errors import ConfigError
from pipeline.plan.campaigns import load_campaigns

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
ROOT = Path(__file__).resolve().parents[1]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
UBND = "cdcs.ubnd@longbien.gov.vn"      # cq001
AIMO = "thaimo.longbien@gmail.com"      # th014
MAYDG = "congdoan@maydg.com.vn"         # dn027
PEER1 = "doug@example.com"              # peer1
NAMES = {PEER1: "Công đoàn thử nghiệm 1", UBND: "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên", AIMO: "Công đoàn Trường Tiểu học Ái Mộ",
         MAYDG: "Công đoàn Công ty Cổ phần May Đức Giang"}


def at(y: int, m: int, d: int, hh: int = 9) -> datetime:
    return datetime(y, m, d, hh, 0, tzinfo=TZ)


def registration(h: Harness, sender: str, year: int, when: datetime, mid: str) -> None:
    data = samples.registration_xlsx(NAMES[sender], [("Tổ công đoàn Văn phòng", f"Một cửa thân thiện {year}", "khac")],
                                     year=year)
    h.deliver(samplemail.gmail_message(sender, DISTRICT, f"Đăng ký mô hình Dân vận khéo năm {year}", "Kính gửi LĐLĐ.",
                                       [(f"Biểu đăng ký {year}.xlsx", data, XLSX)], message_id=mid,
                                       date=when.strftime("%a, %d %b %Y %H:%M:%S %z")), when)


def report(h: Harness, sender: str, title: str, filename: str, when: datetime, mid: str) -> None:
    data = samples.report_docx(NAMES[sender], title=title)
    h.deliver(samplemail.gmail_message(sender, DISTRICT, "Gửi báo cáo", "Kính gửi LĐLĐ.",
                                       [(filename, data, DOCX)], message_id=mid,
                                       date=when.strftime("%a, %d %b %Y %H:%M:%S %z")), when)


def receipts(h: Harness) -> list[EmailMessage]:
    msgs = [email.message_from_bytes(m.raw, policy=policy.default) for m in h.smtp.messages]
    return [m for m in msgs if m["Subject"].startswith("Re:")]


def body(m: EmailMessage) -> str:
    return m.get_body(("plain",)).get_content()


def set_config(h: Harness, **changes: object) -> None:
    data = yaml.safe_load(h.cfg_path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if "." in key:
            section, name = key.split(".")
            data[section][name] = value
        else:
            data[key] = value
    h.cfg_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    h.reopen()


def history(h: Harness) -> None:
    """Years of mail in the district's mailbox before the 2022 plan (dated 26/01/2022)."""
    registration(h, AIMO, 2019, at(2019, 2, 10), "<r2019@aimo>")
    registration(h, MAYDG, 2021, at(2021, 2, 15), "<r2021@maydg>")
    report(h, UBND, "BÁO CÁO Kết quả thực hiện quý I năm 2021", "Bao cao quy I 2021.docx", at(2021, 3, 10),
           "<q1-2021@ubnd>")
    # The 2021 annual report, sent in January 2022: before the 2022 plan existed.
    report(h, MAYDG, "BÁO CÁO Kết quả thực hiện năm 2021", "Bao cao nam 2021.docx", at(2022, 1, 5),
           "<y2021@maydg>")


def test_first_contact_with_a_mailbox_with_history(intake: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    history(intake)
    # This year's mail, waiting since before the worker first ran (a backlog within the campaign).
    registration(intake, UBND, 2022, at(2022, 2, 10), "<r2022@ubnd>")
    report(intake, AIMO, "BÁO CÁO Kết quả thực hiện quý I năm 2022", "Bao cao quy I.docx", at(2022, 3, 10),
           "<q1-2022@aimo>")

    summary = intake.poll()
    # Only mail since the plan opened was asked for (SEARCH SINCE): the old mail is never downloaded.
    assert summary.fetched == 2 and summary.new == 2
    sent = receipts(intake)
    assert sorted(m["To"] for m in sent) == sorted([UBND, AIMO])
    assert all("2019" not in body(m) and "2021" not in body(m) for m in sent)
    docs = {d["filename"]: d for m in intake.export()["messages"] for d in m["documents"]}
    assert set(docs) == {"Biểu đăng ký 2022.xlsx", "Bao cao quy I.docx"}
    assert docs["Bao cao quy I.docx"]["period"] == "2022-Q1" and docs["Bao cao quy I.docx"]["on_time"] is True
    assert {d["campaign"] for d in docs.values()} == {2022}
    assert intake.ctx.store.get_kv("mailbox.horizon") == "2022-01-25T17:00:00+00:00"

    # The units that registered only in 2019 and 2021 are reminded before 22/02/2022; the one of 2022 is not.
    assert cli.main(["--config", str(intake.cfg_path), "remind", "--today", "2022-02-15"]) == 0
    reminded = {r.unit_id for r in intake.ctx.store.reminder_rows(2022)
                if r.obligation_id == "registration" and r.outbox_id is not None}
    assert reminded == {"th014", "dn027", "peer1", "peer2"}
    capsys.readouterr()


def test_since_moves_the_first_contact_earlier(intake: Harness) -> None:
    set_config(intake, **{"mailbox.since": "01/01/2021"})
    history(intake)
    registration(intake, UBND, 2022, at(2022, 2, 10), "<r2022@ubnd>")
    summary = intake.poll()
    # 2021 and January 2022 are asked for now; 2019 still is not.
    assert summary.fetched == 4
    rows = {m["message_id"]: m for m in intake.export()["messages"]}
    assert set(rows) == {"<r2021@maydg>", "<q1-2021@ubnd>", "<y2021@maydg>", "<r2022@ubnd>"}
    for mid in ("<r2021@maydg>", "<q1-2021@ubnd>", "<y2021@maydg>"):
        # Recorded, visible to staff, but neither answered nor counted: no campaign was open.
        assert rows[mid]["state"] == "ignored" and rows[mid]["documents"] == [], mid
        assert "trước khi bắt đầu thu nhận (26/01/2022)" in rows[mid]["reason"], rows[mid]["reason"]
        assert rows[mid]["campaign"] is None
    assert [m["To"] for m in receipts(intake)] == [UBND]
    # The horizon stays where `since` put it when the key is taken out of the config again.
    set_config(intake, **{"mailbox.since": None})
    assert intake.ctx.horizon() == datetime(2021, 1, 1, tzinfo=TZ)


def test_since_moves_the_first_contact_later(intake: Harness) -> None:
    set_config(intake, **{"mailbox.since": "2022-03-01"})
    registration(intake, UBND, 2022, at(2022, 2, 10), "<r2022@ubnd>")
    report(intake, AIMO, "BÁO CÁO Kết quả thực hiện quý I năm 2022", "Bao cao quy I.docx", at(2022, 3, 10),
           "<q1-2022@aimo>")
    summary = intake.poll()
    assert summary.fetched == 1
    assert [m["To"] for m in receipts(intake)] == [AIMO]


def test_a_fresh_install_in_2023_never_reminds_units_of_2022(intake: Harness) -> None:
    set_config(intake, year=2023)
    registration(intake, UBND, 2023, at(2023, 2, 10), "<r2023@ubnd>")
    intake.poll()
    # First contact fixed the horizon at the 2023 plan's opening: 2022 was never collected here.
    assert intake.ctx.store.get_kv("mailbox.horizon") == "2023-01-25T17:00:00+00:00"
    assert intake.ctx.reminded_years() == [2023]


def test_the_office_moves_to_2023_by_changing_year(intake: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    registration(intake, UBND, 2022, at(2022, 2, 10), "<r2022@ubnd>")
    registration(intake, AIMO, 2022, at(2022, 2, 12), "<r2022@aimo>")
    report(intake, MAYDG, "BÁO CÁO Kết quả thực hiện quý III năm 2022", "Bao cao quy III.docx", at(2022, 9, 12),
           "<q3-2022@maydg>")
    intake.poll()
    before = intake.export()
    assert len(receipts(intake)) == 3

    set_config(intake, year=2023)
    # 2022's annual report, late, in January 2023 (before the 2023 plan opens on 26/01/2023).
    report(intake, MAYDG, "BÁO CÁO Kết quả thực hiện năm 2022", "Bao cao nam 2022.docx", at(2023, 1, 5),
           "<y2022@maydg>")
    # Ái Mộ registers for 2023; May Đức Giang sends a 2022 registration form in February 2023.
    registration(intake, AIMO, 2023, at(2023, 2, 10), "<r2023@aimo>")
    registration(intake, MAYDG, 2022, at(2023, 2, 11), "<r2022-late@maydg>")
    # A 2023 form sent before the 2023 plan opens (26/01) counts for 2023, not for 2022.
    registration(intake, PEER1, 2023, at(2023, 1, 20), "<r2023-early@peer1>")
    intake.poll()

    after = {m["message_id"]: m for m in intake.export()["messages"]}
    # 2022's records are intact.
    for m in before["messages"]:
        assert after[m["message_id"]]["documents"] == m["documents"]
        assert after[m["message_id"]]["state"] == m["state"]
    late = after["<y2022@maydg>"]["documents"][0]
    assert (late["period"], late["campaign"], late["on_time"]) == ("2022-Y", 2022, False)
    assert after["<y2022@maydg>"]["campaign"] == 2022  # arrived before the 2023 plan opened
    new = after["<r2023@aimo>"]["documents"][0]
    assert (new["kind"], new["campaign"], new["on_time"]) == ("registration", 2023, True)
    again = after["<r2022-late@maydg>"]["documents"][0]
    assert (again["kind"], again["campaign"], again["state"], again["on_time"]) == ("registration", 2022, "accepted",
                                                                                  False)
    assert after["<r2022-late@maydg>"]["campaign"] == 2023
    early = after["<r2023-early@peer1>"]["documents"][0]
    assert (early["campaign"], early["state"], early["on_time"], early["issues"]) == (2023, "accepted", True, [])

    mails = {m["In-Reply-To"]: body(m) for m in receipts(intake)}
    assert "nộp muộn so với hạn 15/12/2022" in mails["<y2022@maydg>"]
    assert "tính cho kế hoạch năm 2022" in mails["<r2022-late@maydg>"]
    assert "đúng hạn" in mails["<r2023@aimo>"]

    # Per campaign: 2022's registration does not meet 2023's obligation.
    states_2023 = {k: v.state for k, v in _states(intake.ctx).items() if k[1] == "registration"}
    assert states_2023[("th014", "registration")] == "on_time"
    assert states_2023[("cq001", "registration")] == "missing"
    assert states_2023[("dn027", "registration")] == "missing"
    states_2022 = _states(intake.ctx.for_year(2022))
    assert states_2022[("cq001", "registration")].state == "on_time"
    assert states_2022[("dn027", "registration")].state == "late"
    assert states_2022[("dn027", "report-year")].state == "late"

    # The worker's daily reminders: after the move, 2022's late annual report is still reminded (up to its
    # cut-off) to the units that owe it; nothing of 2023 is due yet on 10/01/2023.
    from pipeline.worker import jobs

    assert intake.ctx.reminded_years() == [2022, 2023]
    jobs.run_job("remind", intake.cfg_path, at(2023, 1, 10, 8))
    late = {(r.unit_id, r.obligation_id) for r in intake.ctx.store.reminder_rows(2022) if r.outbox_id is not None}
    assert late == {(u, "report-year") for u in ("cq001", "th014", "peer1", "peer2")}
    assert intake.ctx.store.reminder_rows(2023) == []

    # Reminders of 2023 go to the units that owe 2023's registration, UBND included.
    assert cli.main(["--config", str(intake.cfg_path), "remind", "--today", "2023-02-15"]) == 0
    reminded = {r.unit_id for r in intake.ctx.store.reminder_rows(2023) if r.obligation_id == "registration"}
    assert reminded == {"cq001", "dn027", "peer2"}
    assert all(r.campaign == 2023 for r in intake.ctx.store.reminder_rows(2023))

    # status / export: the current campaign by default, any other with --year.
    capsys.readouterr()
    assert cli.main(["--config", str(intake.cfg_path), "status"]) == 0
    now = capsys.readouterr().out
    assert "KẾ HOẠCH NĂM 2023" in now and "Biểu đăng ký 2023.xlsx" in now and "Bao cao quy III.docx" not in now
    assert cli.main(["--config", str(intake.cfg_path), "status", "--year", "2022"]) == 0
    then = capsys.readouterr().out
    assert "KẾ HOẠCH NĂM 2022" in then and "Bao cao quy III.docx" in then
    # of the 2023 forms only the one that arrived while 2022 was open, marked as counting for 2023
    assert then.count("Biểu đăng ký 2023.xlsx") == 1 and "[tính cho năm 2023; đúng hạn]" in then
    out = intake.cfg_path.parent / "export-2022.json"
    assert cli.main(["--config", str(intake.cfg_path), "export", "--year", "2022", "--out", str(out)]) == 0
    exported = json.loads(out.read_text(encoding="utf-8"))
    assert exported["campaign"] == 2022
    assert "<r2023@aimo>" not in {m["message_id"] for m in exported["messages"]}
    assert "<y2022@maydg>" in {m["message_id"] for m in exported["messages"]}
    capsys.readouterr()


def _states(ctx: Context):  # type: ignore[no-untyped-def]
    from pipeline.plan.reminders import current_states

    return current_states(ctx)


# -- the campaign files (pure) --------------------------------------------------------------------------


def test_a_plan_recurs_with_its_dates_moved_until_a_later_file_replaces_it(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    (rules / "campaigns").mkdir(parents=True)
    text = (ROOT / "rules" / "campaigns" / "2022.yaml").read_text(encoding="utf-8")
    (rules / "campaigns" / "2022.yaml").write_text(text, encoding="utf-8")
    later = text.replace("year: 2022", "year: 2025").replace('opens: "26/01"', 'opens: "10/02"') \
                .replace('due: "02-22"', 'due: "03-01"')
    (rules / "campaigns" / "2025.yaml").write_text(later, encoding="utf-8")
    c = load_campaigns(rules, "Asia/Ho_Chi_Minh")
    reg = {y: next(o for o in c[y].obligations if o.id == "registration") for y in (2022, 2023, 2024, 2025, 2026)}
    assert [reg[y].due_date.isoformat() for y in (2022, 2023, 2024)] == ["2022-02-22", "2023-02-22", "2024-02-22"]
    assert [reg[y].due_date.isoformat() for y in (2025, 2026)] == ["2025-03-01", "2026-03-01"]
    assert c[2024].opens_at == datetime(2024, 1, 26, tzinfo=TZ) and c[2026].opens_at == datetime(2026, 2, 10, tzinfo=TZ)
    assert c[2023].title == "Kế hoạch thực hiện chủ đề công tác năm 2023"
    assert c.get(2021) is None
    # The campaign open at a moment, never later than the configured year.
    assert c.open_at(at(2023, 1, 5), upto=2023).year == 2022
    assert c.open_at(at(2023, 1, 26, 0), upto=2023).year == 2023
    assert c.open_at(at(2023, 6, 1), upto=2022).year == 2022
    assert c.open_at(at(2022, 1, 25, 23), upto=2022) is None
    assert c.candidates(2023) == ((2022, ("registration", "summary", "commendation", "report")),
                                  (2023, ("registration", "summary", "commendation", "report")))


@pytest.mark.parametrize(("name", "text", "fragments"), [
    ("2022.yaml", "year: 2022\ntitle: T\nopens: '26/01'\nforms: [registration]\nobligations: []\ncolour: red\n",
     ["colour", "unknown key"]),
    ("2022.yaml", "year: 2023\ntitle: T\nopens: '26/01'\nforms: [registration]\nobligations: []\n",
     ["year", "2022.yaml"]),
    ("kehoach.yaml", "year: 2022\ntitle: T\nopens: '26/01'\nforms: [registration]\nobligations: []\n",
     ["kehoach.yaml", "2023.yaml"]),
    ("2022.yaml", "year: 2022\ntitle: T\nopens: '31/02'\nforms: [registration]\nobligations: []\n",
     ["opens", "31/02"]),
    ("2022.yaml", "year: 2022\ntitle: T\nopens: '26/01'\nforms: []\nobligations: []\n",
     ["forms", "at least one form"]),
    ("2022.yaml", "year: 2022\ntitle: T\nopens: '26/01'\nforms: [registration]\n"
                  "obligations:\n  - {id: r, title: R, kinds: [summary], due: '02-22'}\n",
     ["obligation 'r'", ".kinds", "'summary'", "not among the campaign's forms"]),
    ("2022.yaml", "year: 2022\ntitle: T\nopens: '26/01'\nforms: [registration]\ntargets: {registration_share: 2}\n"
                  "obligations: []\n",
     ["targets.registration_share"]),
])
def test_a_campaign_file_with_a_mistake_is_refused_naming_file_and_key(tmp_path: Path, name: str, text: str,
                                                                      fragments: list[str]) -> None:
    folder = tmp_path / "rules" / "campaigns"
    folder.mkdir(parents=True)
    (folder / name).write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        c = load_campaigns(tmp_path / "rules", "Asia/Ho_Chi_Minh")
        c[2022]
    message = str(info.value)
    assert message.startswith(str(folder / name)), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_a_form_the_rules_do_not_define_stops_the_start(tmp_path: Path) -> None:
    import shutil

    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    path = rules / "campaigns" / "2022.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("forms: [registration,", "forms: [phieu-moi, registration,"),
                    encoding="utf-8")
    units = tmp_path / "units.csv"
    units.write_text("unit_id,name,group,emails\ncq001,Công đoàn A,hcsn,a@example.org\n", encoding="utf-8")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "organisation": "LĐLĐ", "year": 2022, "rules": str(rules), "units": str(units),
        "mailbox": {"host": "127.0.0.1", "security": "plain", "username": "u", "password_env": "X"},
        "smtp": {"host": "127.0.0.1", "security": "plain", "sender": "a@example.org"},
        "storage": {"database": "db.sqlite3", "archive": "archive"},
    }, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match="phieu-moi"):
        Context(load_config(cfg))
    # A configured year before the first plan is refused too, saying which year the first plan is.
    path.write_text(path.read_text(encoding="utf-8").replace("forms: [phieu-moi, registration,", "forms: [registration,"),
                    encoding="utf-8")
    data = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    data["year"] = 2021
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match="2022"):
        Context(load_config(cfg))


def test_an_obligation_met_by_any_report_form_needs_a_period(tmp_path: Path) -> None:
    folder = tmp_path / "rules" / "campaigns"
    folder.mkdir(parents=True)
    path = folder / "2022.yaml"
    path.write_text("year: 2022\ntitle: T\nopens: '26/01'\nforms: [registration, bao-cao-thang]\n"
                    "obligations:\n  - {id: thang-1, title: B, kinds: [bao-cao-thang], due: '01-31'}\n", encoding="utf-8")
    campaigns = load_campaigns(tmp_path / "rules", "Asia/Ho_Chi_Minh", report_ids=frozenset({"bao-cao-thang"}))
    with pytest.raises(ConfigError) as info:
        campaigns[2022]
    assert str(info.value).startswith(f"{path}: obligation 'thang-1' (obligations[0]).period: ")
    assert "bao-cao-thang" in str(info.value)


def test_a_ledger_without_a_horizon_keeps_collecting_from_its_first_campaign(intake: Harness) -> None:
    """A ledger upgraded from the first release has mail but no horizon; the office may move to 2023 first."""
    registration(intake, UBND, 2022, at(2022, 2, 10), "<r2022@ubnd>")
    intake.poll()
    with intake.ctx.store.tx() as c:
        c.execute(sa.text("DELETE FROM kv WHERE key = 'mailbox.horizon'"))
    set_config(intake, year=2023)
    assert intake.ctx.horizon() == datetime(2022, 1, 26, tzinfo=TZ)
    assert intake.ctx.reminded_years() == [2022, 2023]
    # 2022's annual report, late in January 2023, is still answered and counted for 2022.
    report(intake, UBND, "BÁO CÁO Kết quả thực hiện năm 2022", "Bao cao nam 2022.docx", at(2023, 1, 5), "<y2022@ubnd>")
    intake.poll()
    [doc] = [d for m in intake.export()["messages"] if m["message_id"] == "<y2022@ubnd>" for d in m["documents"]]
    assert (doc["period"], doc["campaign"], doc["on_time"]) == ("2022-Y", 2022, False)

