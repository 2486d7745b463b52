"""What the bench's figures stand on: real servers, a config, realistic mail, `intake run` as a process,
and the /proc readings of a process tree.

Only public entry points of the project: tests/servers.py (Dovecot, the aiosmtpd SmtpSink), the demo's
sample builders (intake_demo) and the `intake` command line. Every server listens on 127.0.0.1.
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _load_servers() -> Any:
    # by path, so that nothing of pytest (tests/conftest.py) is needed
    spec = importlib.util.spec_from_file_location("intake_test_servers", ROOT / "tests" / "servers.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    return mod


servers = _load_servers()

from intake_demo import samplemail, samples  # noqa: E402

DISTRICT = "ldldlongbien@gmail.com"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PW_ENV = "INTAKE_BENCH_IMAP_PW"
UNIT_NAMES = {
    "cdcs.ubnd@longbien.gov.vn": "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên",
    "thaimo.longbien@gmail.com": "Công đoàn Trường Tiểu học Ái Mộ",
    "hieutruong.aimo@gmail.com": "Công đoàn Trường Tiểu học Ái Mộ",
    "congdoan@maydg.com.vn": "Công đoàn Công ty Cổ phần May Đức Giang",
}
SENDERS = list(UNIT_NAMES)
UNITS_CSV = (
    "\ufeffunit_id,name,group,emails\n"
    "cq001,Công đoàn cơ quan Ủy ban nhân dân quận Long Biên,hcsn,CDCS.UBND@longbien.gov.vn\n"
    "th014,Công đoàn Trường Tiểu học Ái Mộ,truong_hoc,thaimo.longbien@gmail.com;hieutruong.aimo@gmail.com\n"
    "dn027,Công đoàn Công ty Cổ phần May Đức Giang,doanh_nghiep,congdoan@maydg.com.vn\n"
)
ENTRIES = [
    ("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac"),
    ("Phòng TN-MT", "Phân loại rác tại nguồn", "bvmt"),
    ("Đồng chí Nguyễn Văn An", "Vận động giải phóng mặt bằng dự án đường 40m", "gpmb"),
]
# INTERNALDATE of the generated backlogs: inside the registration window of the 2022 plan
BASE_DATE = datetime(2022, 2, 14, 8, 0, tzinfo=timezone(timedelta(hours=7)))
#: the largest sending limits config accepts: a backlog's receipts all leave in its pass
NO_SEND_LIMITS = {"per_minute": 10_000, "per_day": 100_000}


def say(text: str = "") -> None:
    print(text, flush=True)


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------------------------- config
def write_config(workdir: Path, *, imap_port: int, smtp_port: int, folder: str = "INBOX",
                 smtp_limits: dict[str, int] | None = None) -> Path:
    """The tests' config shape (plain IMAP/SMTP on loopback, SQLite and archive in ``workdir``); every
    setting not named here keeps its default (poll every 5 minutes, IDLE on, batches of 50, 20 mails a
    minute and 400 a day unless ``smtp_limits``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "units.csv").write_text(UNITS_CSV, encoding="utf-8")
    cfg = {
        "organisation": "Liên đoàn Lao động quận Long Biên",
        "year": 2022,
        "timezone": "Asia/Ho_Chi_Minh",
        "mailbox": {"host": "127.0.0.1", "port": imap_port, "security": "plain", "username": "district@example.org",
                    "password_env": PW_ENV, "folder": folder},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "plain",
                 "sender": f"LĐLĐ quận Long Biên <{DISTRICT}>", **(smtp_limits or {})},
        "storage": {"database": "db/intake.sqlite3", "archive": "archive"},
        "units": "units.csv",
        "staff": ["staff@example.org"],
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- mail
def unit_workbook(i: int) -> tuple[str, bytes]:
    """Mail i's sender and a registration workbook of its own (names and models carry i): the units in
    turn, and no two files the same, so nothing is served from a cache of an earlier identical file."""
    sender = SENDERS[i % len(SENDERS)]
    entries = [(f"{name} (lượt {i})", f"{model} – đợt {i // 3 + 1}", cat) for name, model, cat in ENTRIES]
    return sender, samples.registration_xlsx(UNIT_NAMES[sender], entries)


def form_mail(sender: str, xlsx: bytes, message_id: str, date: str | None = None) -> bytes:
    return samplemail.gmail_message(
        sender, DISTRICT, "Đăng ký mô hình Dân vận khéo 2022", "Kính gửi LĐLĐ quận, đơn vị gửi biểu đăng ký.",
        [("Biểu đăng ký Dân vận khéo 2022.xlsx", xlsx, XLSX_TYPE)], message_id=message_id, date=date)


def form_mails(workbooks: list[tuple[str, bytes]], tag: str) -> Iterator[tuple[bytes, tuple, datetime]]:
    """(raw, flags, INTERNALDATE) per workbook, for ``Dovecot.append_many``."""
    for i, (sender, xlsx) in enumerate(workbooks):
        raw = form_mail(sender, xlsx, f"<bench-{tag}-{i}@mail.gmail.com>", "Mon, 14 Feb 2022 08:00:00 +0700")
        yield raw, (), BASE_DATE + timedelta(seconds=30 * i)


def small_mails(n: int, tag: str) -> Iterator[tuple[bytes, tuple, datetime]]:
    """n short text mails from registered units (each gets a receipt), for a large recorded mailbox."""
    for i in range(n):
        raw = samplemail.gmail_message(
            SENDERS[i % len(SENDERS)], DISTRICT, f"Báo cáo nhanh số {i}", f"Kính gửi LĐLĐ quận, thông tin số {i}.",
            message_id=f"<bench-{tag}-{i}@mail.gmail.com>", date="Mon, 14 Feb 2022 08:00:00 +0700")
        yield raw, (), BASE_DATE + timedelta(seconds=30 * i)


# ---------------------------------------------------------------------------------------------- SMTP sink
_SINK_CHILD = r"""
import importlib.util, json, sys
from email.parser import BytesHeaderParser
spec = importlib.util.spec_from_file_location("intake_test_servers", sys.argv[1])
mod = importlib.util.module_from_spec(spec); sys.modules[spec.name] = mod; spec.loader.exec_module(mod)
sink = mod.SmtpSink().start()
print(sink.port, flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "count":
        print(len(sink.messages), flush=True)
    elif cmd == "replies":
        got = [(BytesHeaderParser().parsebytes(m.raw).get("In-Reply-To"), m.received_at) for m in sink.messages]
        print(json.dumps([(str(r).strip(), t) for r, t in got if r]), flush=True)
    elif cmd == "clear":
        sink.clear(); print("ok", flush=True)
    elif cmd == "quit":
        break
sink.stop()
"""


class SinkProcess:
    """The tests' aiosmtpd SmtpSink on loopback, in a child process so that receiving hundreds of receipts
    does not share this process's interpreter lock with a pass measured here."""

    def __enter__(self) -> SinkProcess:
        self.proc = subprocess.Popen([sys.executable, "-c", _SINK_CHILD, str(ROOT / "tests" / "servers.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.__exit__()
            raise RuntimeError(f"SMTP sink did not start: {line!r}")
        self.port = int(line)
        return self

    def _ask(self, cmd: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def count(self) -> int:
        return int(self._ask("count"))

    def clear(self) -> None:
        self._ask("clear")

    def replies(self) -> dict[str, float]:
        """In-Reply-To → the time (time.time) the sink accepted that mail; the first when several."""
        out: dict[str, float] = {}
        for irt, at in json.loads(self._ask("replies")):
            out.setdefault(irt, at)
        return out

    def __exit__(self, *exc: object) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------------------------- intake run
class WorkerProcess:
    """`intake run --config …` as a real process; its log lines (stderr) are collected as they come."""

    def __init__(self, cfg_path: Path, password: str) -> None:
        script = Path(sys.executable).with_name("intake")  # the venv's console script, as a user runs it
        command = [str(script)] if script.exists() else [sys.executable, "-m", "pipeline"]
        self.proc = subprocess.Popen(
            [*command, "--config", str(cfg_path), "run"],
            env={**os.environ, PW_ENV: password, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=cfg_path.parent)
        self.output = servers.LineLog(self.proc.stderr, lambda: self.proc.poll() is None)
        self.lines = self.output.lines

    def count(self, needle: str) -> int:
        return self.output.count(needle)

    def wait_log(self, needle: str, count: int = 1, timeout: float = 60.0) -> bool:
        """True once ``needle`` is in ``count`` log lines; False after ``timeout`` or when the worker exited."""
        return self.output.wait(needle, count, timeout)

    def problems(self) -> list[str]:
        return [ln.rstrip() for ln in self.output.text.splitlines() if " ERROR " in ln or " WARNING " in ln
                or "Traceback" in ln]

    def stop(self) -> int | None:
        """SIGTERM (the job in hand finishes), then SIGKILL after 30 s; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode


# ---------------------------------------------------------------------------------------------- /proc
def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces): [state, ppid, …]."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process (its threads included), in seconds."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def command_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in args if a)
    return "form reader" if "child_main" in text else ("intake run" if " run" in text else text[:40])
