#!/usr/bin/env python3
"""Benchmark of the intake pass against a real private Dovecot and a real SMTP sink.

    .venv/bin/python bench/bench_intake.py            # full sizes (several minutes)
    .venv/bin/python bench/bench_intake.py --quick    # small sizes, a smoke run (< 1 min)

Prints figures, each beside its goal and whether the goal is met; it never fails on a missed goal.

(a) idle pass: the time of a pass that finds nothing new, on a mailbox of 100 and of 10,000 messages
    that are already recorded (median of several passes). Goal: within 1.5x of each other.
(b) backlog ingest: messages/second of one full pass over 2,000 new messages from three units, each
    with its own small registration .xlsx (archive, record, parse, read, receipt enqueued and sent) to the
    tests' aiosmtpd sink, beside a naive loop in the same run
    (one `FETCH RFC822` round trip per message with imapclient, `email` to parse, `pandas.read_excel` to
    read the sheet). Goal: at least 5x the naive loop. Peak RSS is reported.

Dovecot comes from tests/servers.py (imported by path), as a child process with its own config and
Maildir under a temp dir; the SMTP sink runs in a child Python process, so that receiving thousands of
receipts does not compete with the measured pass for this process's GIL.
See bench/README.md for what the figures mean and what was measured.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import io
import logging
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _load_servers() -> Any:
    spec = importlib.util.spec_from_file_location("intake_test_servers", ROOT / "tests" / "servers.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    return mod


servers = _load_servers()

import yaml  # noqa: E402

from intake_demo import samplemail
from pipeline.config import load_config  # noqa: E402
from intake_demo import samples
from pipeline.context import Context  # noqa: E402
from pipeline.worker.mailpass import PassSummary, run_pass

DISTRICT = "ldldlongbien@gmail.com"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PW_ENV = "INTAKE_BENCH_IMAP_PW"
UBND_NAME = "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên"
UBND = "cdcs.ubnd@longbien.gov.vn"
SENDERS = [UBND, "thaimo.longbien@gmail.com", "hieutruong.aimo@gmail.com", "congdoan@maydg.com.vn"]
UNITS_CSV = (
    "\ufeffunit_id,name,group,emails\n"
    f"cq001,{UBND_NAME},hcsn,CDCS.UBND@longbien.gov.vn\n"
    "th014,Công đoàn Trường Tiểu học Ái Mộ,truong_hoc,thaimo.longbien@gmail.com;hieutruong.aimo@gmail.com\n"
    "dn027,Công đoàn Công ty Cổ phần May Đức Giang,doanh_nghiep,congdoan@maydg.com.vn\n"
)
ENTRIES = [
    ("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac"),
    ("Phòng TN-MT", "Phân loại rác tại nguồn", "bvmt"),
    ("Đồng chí Nguyễn Văn An", "Vận động giải phóng mặt bằng dự án đường 40m", "gpmb"),
]
TZ7 = timezone(timedelta(hours=7))
BASE_DATE = datetime(2022, 2, 14, 8, 0, tzinfo=TZ7)  # inside the registration window of the 2022 plan

IDLE_GOAL_RATIO = 1.5
INGEST_GOAL_FACTOR = 5.0


# ---------------------------------------------------------------------------------------------- helpers
def say(text: str = "") -> None:
    print(text, flush=True)


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.0f} MiB"


def _status_kib(pid: int | str, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakRss:
    """Peak resident memory of this process during a block.

    Resets the kernel's high-water mark (``echo 5 > /proc/self/clear_refs``) and reads VmHWM after;
    where that is not allowed, samples VmRSS every 20 ms instead.
    """

    def __enter__(self) -> "PeakRss":
        gc.collect()
        self.start_kib = _status_kib("self", "VmRSS") or 0
        self.peak_kib = 0
        self.method = "VmHWM"
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            self.method = "sampled"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.method == "sampled":
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_kib = max(self.peak_kib, _status_kib("self", "VmRSS") or 0)

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        else:
            self.peak_kib = _status_kib("self", "VmHWM") or 0

    @property
    def bytes(self) -> int:
        return self.peak_kib * 1024

    @property
    def start_bytes(self) -> int:
        return self.start_kib * 1024


def reader_child_peak() -> int | None:
    """VmHWM (bytes) of the isolated form-reading child process, if one is running."""
    from pipeline.forms import isolation

    w = isolation.reader()
    if w.proc is None or w.proc.poll() is not None:
        return None
    kib = _status_kib(w.proc.pid, "VmHWM")
    return kib * 1024 if kib is not None else None


# ---------------------------------------------------------------------------------------------- sink
_SINK_CHILD = r"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("intake_test_servers", sys.argv[1])
mod = importlib.util.module_from_spec(spec); sys.modules[spec.name] = mod; spec.loader.exec_module(mod)
sink = mod.SmtpSink().start()
print(sink.port, flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "count":
        print(len(sink._messages), flush=True)
    elif cmd == "clear":
        sink.clear(); print("ok", flush=True)
    elif cmd == "quit":
        break
sink.stop()
"""


SINKS = {
    # the test suite's SMTP server (aiosmtpd, tests/servers.py): ~0.45 ms of CPU per receipt
    "aiosmtpd": [sys.executable, "-c", _SINK_CHILD, str(ROOT / "tests" / "servers.py")],
}


class SinkProcess:
    """An SMTP server on loopback in a child Python process (``SINKS``); counts what it received."""

    def __init__(self, kind: str = "aiosmtpd") -> None:
        self.kind = kind

    def __enter__(self) -> "SinkProcess":
        self.proc = subprocess.Popen(SINKS[self.kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.proc.kill()
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

    def __exit__(self, *exc: object) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------------------------- setup
def write_config(workdir: Path, *, imap_port: int, smtp_port: int, folder: str) -> Path:
    """A config like tests/conftest.write_config: plain loopback IMAP/SMTP, SQLite + archive in workdir.

    batch_size is left at its default (50), sending limits are set to the maxima config allows (10,000/min, 100,000/day).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "units.csv").write_text(UNITS_CSV, encoding="utf-8")
    cfg = {
        "organisation": "Liên đoàn Lao động quận Long Biên",
        "year": 2022,
        "timezone": "Asia/Ho_Chi_Minh",
        "mailbox": {"host": "127.0.0.1", "port": imap_port, "security": "plain", "username": "district@example.org",
                    "password_env": PW_ENV, "folder": folder, "timeout": 60},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "plain",
                 "sender": f"LĐLĐ quận Long Biên <{DISTRICT}>", "timeout": 60,
                 "per_minute": 10_000, "per_day": 100_000},
        "storage": {"database": "db/intake.sqlite3", "archive": "archive"},
        "units": "units.csv",
        "staff": ["staff@example.org"],
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def small_messages(n: int, tag: str) -> Iterator[tuple[bytes, tuple, datetime]]:
    """n small text mails from registered units (each gets a receipt), distinct Message-IDs."""
    for i in range(n):
        sender = SENDERS[i % len(SENDERS)]
        raw = samplemail.gmail_message(
            sender, DISTRICT, f"Báo cáo nhanh số {i}", f"Kính gửi LĐLĐ quận, đơn vị gửi thông tin số {i}.",
            message_id=f"<bench-{tag}-{i}@mail.gmail.com>", date="Mon, 14 Feb 2022 08:00:00 +0700")
        yield raw, (), BASE_DATE + timedelta(seconds=30 * i)


UNIT_NAMES = {UBND: UBND_NAME, "thaimo.longbien@gmail.com": "Công đoàn Trường Tiểu học Ái Mộ",
              "hieutruong.aimo@gmail.com": "Công đoàn Trường Tiểu học Ái Mộ",
              "congdoan@maydg.com.vn": "Công đoàn Công ty Cổ phần May Đức Giang"}


def backlog_workbook(i: int) -> tuple[str, bytes]:
    """Mail i's sender and its own registration workbook: the three units in turn, each workbook with its
    unit's name and entries of its own (names and models carry i), so no two of them are the same file."""
    sender = SENDERS[i % len(SENDERS)]
    entries = [(f"{name} (lượt {i})", f"{model} – đợt {i // 3 + 1}", cat) for name, model, cat in ENTRIES]
    return sender, samples.registration_xlsx(UNIT_NAMES[sender], entries)


def xlsx_messages(workbooks: list[tuple[str, bytes]], tag: str) -> Iterator[tuple[bytes, tuple, datetime]]:
    """One mail per (sender, workbook), distinct Message-IDs."""
    for i, (sender, xlsx) in enumerate(workbooks):
        raw = samplemail.gmail_message(
            sender, DISTRICT, "Đăng ký mô hình Dân vận khéo 2022", "Kính gửi LĐLĐ quận, đơn vị gửi biểu đăng ký.",
            [("Biểu đăng ký Dân vận khéo 2022.xlsx", xlsx, XLSX_TYPE)],
            message_id=f"<bench-{tag}-{i}@mail.gmail.com>", date="Mon, 14 Feb 2022 08:00:00 +0700")
        yield raw, (), BASE_DATE + timedelta(seconds=30 * i)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def summary_line(s: PassSummary) -> str:
    return (f"fetched={s.fetched} new={s.new} duplicates={s.duplicates} states={s.states} "
            f"outbox={s.outbox} error={s.error}")


def profiled(fn: Callable[[], Any], out: Path | None) -> Any:
    if out is None:
        return fn()
    import cProfile

    prof = cProfile.Profile()
    try:
        return prof.runcall(fn)
    finally:
        prof.dump_stats(str(out))
        say(f"    cProfile written to {out}")


# ---------------------------------------------------------------------------------------------- (a)
def bench_idle(dc: Any, sink: SinkProcess, base: Path, sizes: list[int], repeats: int,
               profile_dir: Path | None) -> dict[int, float]:
    say(f"(a) idle pass (nothing new) on mailboxes of {' vs '.join(f'{n:,}' for n in sizes)} recorded messages")
    medians: dict[int, float] = {}
    for n in sizes:
        folder = f"Idle{n}"
        t, count = timed(lambda: dc.append_many(small_messages(n, f"idle{n}"), folder=folder, batch=500))
        say(f"  {n:>6,}: appended {count:,} small mails to Dovecot folder {folder} in {fmt_s(t)}")
        cfg_path = write_config(base / f"idle{n}", imap_port=dc.port, smtp_port=sink.port, folder=folder)
        ctx = Context(load_config(cfg_path))
        sink.clear()
        t, s = timed(lambda: run_pass(ctx))
        sent = sink.count()
        say(f"          first pass recorded them in {fmt_s(t)} ({n / t:,.0f} msg/s); {summary_line(s)}; "
            f"sink received {sent:,}")
        if s.new != n or s.error:
            say(f"          WARNING: expected {n} new messages and no error")
        run_pass(ctx)  # warm-up: caches, connection pool
        times = []
        for _ in range(repeats):
            t, s = timed(lambda: run_pass(ctx))
            if s.fetched or s.error:
                say(f"          WARNING: idle pass was not idle: {summary_line(s)}")
            times.append(t)
        if profile_dir is not None:
            profiled(lambda: [run_pass(ctx) for _ in range(repeats)], profile_dir / f"idle{n}.prof")
        medians[n] = statistics.median(times)
        say(f"          idle pass: median {fmt_s(medians[n])} over {repeats} "
            f"(min {fmt_s(min(times))}, max {fmt_s(max(times))})")
        ctx.store.engine.dispose()
    return medians


# ---------------------------------------------------------------------------------------------- (b)
def naive_loop(dc: Any, folder: str) -> tuple[int, int]:
    """One FETCH RFC822 round trip per message, email to parse, pandas.read_excel to read each .xlsx."""
    import email
    import email.policy

    import pandas as pd
    from imapclient import IMAPClient

    sheets = rows = 0
    c = IMAPClient(dc.host, port=dc.port, ssl=False, timeout=60)
    try:
        c.login(dc.user, dc.password)
        c.select_folder(folder, readonly=True)
        for uid in c.search(["ALL"]):
            raw = c.fetch([uid], [b"RFC822"])[uid][b"RFC822"]
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            for part in msg.iter_attachments():
                if (part.get_filename() or "").lower().endswith(".xlsx"):
                    df = pd.read_excel(io.BytesIO(part.get_content()), header=None, engine="openpyxl")
                    sheets += 1
                    rows += len(df)
        c.logout()
    finally:
        try:
            c.shutdown()
        except Exception:
            pass
    return sheets, rows


def bench_ingest(dc: Any, sinks: list[str], base: Path, n: int, profile_dir: Path | None) -> dict[str, Any]:
    say(f"(b) backlog ingest: {n:,} mails, from three units, each with its own small registration .xlsx")
    t, workbooks = timed(lambda: [backlog_workbook(i) for i in range(n)])
    sizes = sorted(len(x) for _s, x in workbooks)
    say(f"  built {n:,} distinct workbooks in {fmt_s(t)} ({sizes[0]:,}–{sizes[-1]:,} bytes)")
    folders = {kind: f"Backlog-{kind}" for kind in sinks}
    for kind, folder in folders.items():  # the same mails in one folder per run, each run from scratch
        t, count = timed(lambda: dc.append_many(xlsx_messages(workbooks, "backlog"), folder=folder, batch=200))
        say(f"  appended {count:,} mails to Dovecot folder {folder} in {fmt_s(t)}")
    workbooks.clear()  # the mailbox has them now

    out: dict[str, Any] = {"n": n, "full": {}, "rss_full": {}, "rss_full_start": {}}
    for kind, folder in folders.items():
        with SinkProcess(kind) as sink:
            cfg_path = write_config(base / f"ingest-{kind}", imap_port=dc.port, smtp_port=sink.port, folder=folder)
            ctx = Context(load_config(cfg_path))
            gc.collect()
            prof = profile_dir and profile_dir / f"ingest-{kind}.prof"
            with PeakRss() as rss_full:
                t_full, s = timed(lambda: profiled(lambda: run_pass(ctx), prof))
            out["child_peak"] = reader_child_peak()
            sent = sink.count()
        say(f"  full pass, {kind} SMTP sink:  {fmt_s(t_full)} → {n / t_full:,.1f} msg/s; {summary_line(s)}; "
            f"sink received {sent:,}")
        if s.new != n or s.states.get("processed") != n or sent != n:
            say(f"  WARNING: expected {n} new, {n} processed and {n} receipts at the sink")
        docs = ctx.store.document_records()
        accepted = sum(1 for d in docs if d.state == "accepted")
        say(f"              documents recorded: {len(docs):,} ({accepted:,} accepted)")
        ctx.store.engine.dispose()
        out["full"][kind], out["rss_full"][kind], out["rss_full_start"][kind] = t_full, rss_full.bytes, rss_full.start_bytes
        out["rss_method"] = rss_full.method

    with PeakRss() as rss_naive:
        t_naive, (sheets, rows) = timed(lambda: naive_loop(dc, next(iter(folders.values()))))
    say(f"  naive loop: {fmt_s(t_naive)} → {n / t_naive:,.1f} msg/s ({sheets:,} sheets read, {rows:,} rows)")
    out.update(naive=t_naive, rss_naive=rss_naive.bytes, rss_naive_start=rss_naive.start_bytes)
    return out


# ---------------------------------------------------------------------------------------------- main
def git_describe() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no",
                                "--", "pipeline", "rules", "templates"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return f"commit {head or '?'}" + (" + uncommitted changes under pipeline/, rules/ or templates/" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (100/1,000 and 200): a smoke run")
    ap.add_argument("--idle-sizes", type=lambda v: [int(x) for x in v.split(",")], default=None,
                    help="comma-separated mailbox sizes for (a) (default 100,10000; quick 100,1000)")
    ap.add_argument("--ingest", type=int, default=None, help="backlog size for (b) (default 2000; quick 200)")
    ap.add_argument("--repeats", type=int, default=None, help="idle passes timed per size (default 9; quick 5)")
    ap.add_argument("--only", choices=("idle", "ingest"), default=None, help="run only one part")
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR",
                    help="also write cProfile stats of the measured passes into DIR (slows them down)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (database, archive)")
    args = ap.parse_args(argv)

    idle_sizes = args.idle_sizes or ([100, 1000] if args.quick else [100, 10_000])
    ingest_n = args.ingest or (200 if args.quick else 2000)
    repeats = args.repeats or (5 if args.quick else 9)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    say(f"intake bench, {datetime.now().astimezone():%Y-%m-%d %H:%M %z}; {'quick' if args.quick else 'full'} run")
    say(f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.platform()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    say(f"code: {git_describe()}")
    if not servers.dovecot_available():
        say(servers.INSTALL_HINT)
        return 2
    base = Path(tempfile.mkdtemp(prefix="intake-bench-"))
    results: dict[str, Any] = {}
    try:
        with servers.Dovecot() as dc:
            os.environ[PW_ENV] = dc.password
            say(f"Dovecot on 127.0.0.1:{dc.port} (Maildir under {dc.root}), work dir {base}")
            say()
            # (b) first: its peak RSS is then not inflated by what (a) left in this process.
            if args.only in (None, "ingest"):
                results["ingest"] = bench_ingest(dc, list(SINKS), base, ingest_n, args.profile)
                say()
            if args.only in (None, "idle"):
                with SinkProcess("aiosmtpd") as sink:
                    results["idle"] = bench_idle(dc, sink, base, idle_sizes, repeats, args.profile)
                say()
    finally:
        if args.keep:
            say(f"work dir kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    say("=" * 100)
    say("FIGURES")
    if "idle" in results:
        med = results["idle"]
        for n in sorted(med):
            say(f"  idle pass, {n:>6,} recorded messages: {fmt_s(med[n])} (median)")
        small, large = min(med), max(med)
        if small != large:
            ratio = med[large] / med[small]
            say(f"  ratio {large:,} / {small:,}: {ratio:.2f}x   goal ≤ {IDLE_GOAL_RATIO}x   "
                f"→ {verdict(ratio <= IDLE_GOAL_RATIO)}")
    if "ingest" in results:
        r = results["ingest"]
        naive = r["n"] / r["naive"]
        say(f"  backlog ingest, {r['n']:,} mails with .xlsx: naive loop {naive:,.1f} msg/s")
        for kind, t_full in r["full"].items():
            full = r["n"] / t_full
            factor = full / naive
            say(f"  full pass, receipts to the {kind} SMTP sink: {full:,.1f} msg/s; full / naive: {factor:.2f}x   "
                f"goal ≥ {INGEST_GOAL_FACTOR:g}x   → {verdict(factor >= INGEST_GOAL_FACTOR)}")
        child = f"; form-reading child process peak {mib(r['child_peak'])}" if r.get("child_peak") else ""
        fulls = ", ".join(f"{mib(r['rss_full'][k])} ({k}, from {mib(r['rss_full_start'][k])})" for k in r["full"])
        say(f"  peak RSS of this process ({r['rss_method']}): full pass {fulls}{child}; "
            f"naive loop {mib(r['rss_naive'])} (from {mib(r['rss_naive_start'])} before it)")
    say(f"  load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
        f"(other work on the machine skews every figure)")
    say(f"  bench process lifetime max RSS: {mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
