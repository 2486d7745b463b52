"""The world of deadline_rush.py: a district of units, the mail they send in the pattern of a real deadline,
and the fake network (an in-memory mailbox, an SMTP transport that records) on a simulated clock."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence
from zoneinfo import ZoneInfo

import yaml

from intake_demo import samplemail, samples
from pipeline.mail.mailbox import Fetched

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
DISTRICT = "ldldlongbien@gmail.com"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DUE = date(2022, 2, 22)
LAST_DAY = date(2022, 2, 23)  # after-1
GROUPS = (("hcsn", "Công đoàn cơ quan số {n}"), ("doanh_nghiep", "Công đoàn Công ty số {n}"),
          ("truong_hoc", "Công đoàn Trường học số {n}"))
ENTRIES = [("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac"),
           ("Phòng TN-MT", "Phân loại rác tại nguồn", "bvmt")]


# ------------------------------------------------------------------------------------------ the district
@dataclass(frozen=True)
class Unit:
    unit_id: str
    name: str
    group: str
    email: str


def district(n: int) -> list[Unit]:
    units = []
    for i in range(1, n + 1):
        group, name = GROUPS[i % len(GROUPS)]
        units.append(Unit(f"u{i:03d}", name.format(n=i), group, f"cd{i:03d}.longbien@gmail.com"))
    return units


def write_config(workdir: Path, units: Sequence[Unit], smtp_limits: dict[str, int]) -> Path:
    """tests/conftest.py's config shape, but the smtp limits left at their defaults unless ``smtp_limits``:
    a @gmail.com sender on smtp.gmail.com (never contacted: the transport is fake)."""
    lines = ["\ufeffunit_id,name,group,emails"] + [f"{u.unit_id},{u.name},{u.group},{u.email}" for u in units]
    (workdir / "units.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = {
        "organisation": "Liên đoàn Lao động quận Long Biên",
        "year": 2022,
        "timezone": "Asia/Ho_Chi_Minh",
        "mailbox": {"host": "imap.gmail.com", "port": 993, "security": "ssl", "username": DISTRICT,
                    "password_env": "INTAKE_BENCH_IMAP_PW", "folder": "INBOX"},
        "smtp": {"host": "smtp.gmail.com", "port": 465, "security": "ssl", "username": DISTRICT,
                 "password_env": "INTAKE_BENCH_SMTP_PW", "sender": f"LĐLĐ quận Long Biên <{DISTRICT}>",
                 **smtp_limits},
        "storage": {"database": "db/intake.sqlite3", "archive": "archive"},
        "units": "units.csv",
        "staff": ["staff@example.org"],
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ who writes when
@dataclass(order=True)
class Arrival:
    at: datetime
    unit_id: str = field(compare=False)
    raw: bytes = field(compare=False, repr=False)
    what: str = field(compare=False)  # good | bad | fixed | again


def day_weight(d: date) -> float:
    """A real deadline: a trickle on working days, most in the last three days, a few a day late."""
    before = (DUE - d).days
    weights = {0: 0.28, 1: 0.22, 2: 0.12, 3: 0.04, -1: 0.03}
    if before in weights:
        return weights[before]
    if before < 0:
        return 0.0
    return 0.008 if d.weekday() >= 5 else 0.025


def time_of_day(rng: random.Random, d: date) -> datetime:
    """Office hours with a morning and an afternoon peak, some in the evening."""
    r = rng.random()
    if r < 0.45:
        minutes = min(max(rng.gauss(9.5 * 60, 60), 7 * 60), 11.5 * 60)
    elif r < 0.87:
        minutes = min(max(rng.gauss(15 * 60, 60), 13.5 * 60), 17.5 * 60)
    else:
        minutes = rng.uniform(19 * 60, 23 * 60 + 50)
    return datetime(d.year, d.month, d.day, tzinfo=TZ) + timedelta(minutes=minutes, seconds=rng.randrange(60))


def mail(unit: Unit, xlsx: bytes, at: datetime, tag: str) -> bytes:
    return samplemail.gmail_message(
        unit.email, DISTRICT, "Đăng ký mô hình Dân vận khéo 2022", "Kính gửi LĐLĐ quận, đơn vị gửi biểu đăng ký.",
        [("Bieu dang ky Dan van kheo 2022.xlsx", xlsx, XLSX_TYPE)],
        message_id=f"<rush-{unit.unit_id}-{tag}@mail.gmail.com>", date=at.strftime("%a, %d %b %Y %H:%M:%S %z"))


def arrivals(units: Sequence[Unit], days: Sequence[date], rng: random.Random, *, share: float = 0.9,
             bad: float = 0.15, twice: float = 0.03) -> list[Arrival]:
    weights = [day_weight(d) for d in days]
    end = datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), TZ)
    out: list[Arrival] = []
    for unit in units:
        if rng.random() >= share or not any(weights):
            continue
        at = time_of_day(rng, rng.choices(days, weights)[0])
        good = samples.registration_xlsx(unit.name, ENTRIES)
        if rng.random() < bad:
            out.append(Arrival(at, unit.unit_id, mail(unit, samples.without_mark(good), at, "bad"), "bad"))
            at = at + timedelta(minutes=rng.uniform(30, 240))  # told by the receipt, fixed within hours
            kind = "fixed"
        else:
            kind = "good"
        if at < end:
            out.append(Arrival(at, unit.unit_id, mail(unit, good, at, kind), kind))
        if rng.random() < twice:
            again = at + timedelta(hours=rng.uniform(1, 30))
            if again < end:
                out.append(Arrival(again, unit.unit_id, mail(unit, good, again, "again"), "again"))
    return sorted(out)


# ------------------------------------------------------------------------------------------ the fake network
class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Sent:
    at: datetime
    message_id: str
    recipients: tuple[str, ...]


class SimMailbox:
    """The district's INBOX in memory (MailboxLike), also its own context manager; its Sent folder is what
    the fake transport sent (read only to settle a send cut off by a crash, which never happens here)."""

    def __init__(self, sent: list[Sent]) -> None:
        self.mails: list[Fetched] = []
        self.sent = sent

    def deliver(self, raw: bytes, at: datetime) -> None:
        uid = len(self.mails) + 1
        self.mails.append(Fetched(uid=uid, raw=raw, internaldate=at, gm_msgid=1_700_000_000_000_000_000 + uid))

    def select(self, folder: str) -> int:
        return 1

    def uids_above(self, last_uid: int) -> list[int]:
        return [m.uid for m in self.mails if m.uid > last_uid]

    def uids_since(self, day: date) -> list[int]:
        return [m.uid for m in self.mails if m.internaldate.astimezone(TZ).date() >= day]

    def fetch(self, uids: Sequence[int]) -> Iterator[Fetched]:
        wanted = set(uids)
        return iter([m for m in self.mails if m.uid in wanted])

    def mark_processed(self, uids: Sequence[int]) -> None:
        pass

    def sent_folder(self, configured: str) -> str | None:
        return "[Gmail]/Sent Mail"

    def holding(self, folder: str, message_ids: Iterable[str]) -> set[str]:
        return set(message_ids) & {s.message_id for s in self.sent}

    def __enter__(self) -> SimMailbox:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


class SimTransport:
    """What leaves, with the simulated time it left (pipeline/outbox/smtp.py's Transport)."""

    def __init__(self, clock: Clock, log: list[Sent]) -> None:
        self.clock, self.log = clock, log

    def send(self, raw: bytes, sender: str, recipients: Sequence[str]) -> None:
        mid = BytesHeaderParser().parsebytes(raw).get("Message-ID", "").strip()
        self.log.append(Sent(self.clock.now, mid, tuple(recipients)))

    def close(self) -> None:
        pass
