#!/usr/bin/env python3
"""The figures of issue 10, each beside its goal: what a unit feels (receipt latency), what the machine
pays for a waiting worker, how a backlog and an idle pass compare, and how big the code is.

    .venv/bin/python bench/bench_intake.py            # full run (about 6 minutes)
    .venv/bin/python bench/bench_intake.py --quick    # smoke run, small sizes (1–2 minutes)
    .venv/bin/python bench/bench_intake.py --only latency|idle|backlog|idlepass|lines

(1) latency   `intake run` at its defaults against a private Dovecot and the tests' aiosmtpd sink; once it
              is idle, N mails (registered units, each with its own .xlsx form) are appended a few seconds
              apart; for each, the time from its APPEND's completion to its receipt's acceptance by the sink
              (matched by In-Reply-To). Goal: p90 <= 5 s.
(2) idle      the same worker afterwards, sampled once a second: VmRSS of its whole process tree (the worker
              and the form-reader child) and the CPU (utime+stime) it used. Goals: <= 200 MiB, <= 1% of a core.
(3) backlog   one pass (`run_pass`) over 600 new mails, each with a distinct .xlsx form, receipts sent, vs a
              naive loop over the same mails in the same run (a FETCH per message, `email`, pandas.read_excel;
              nothing stored or sent). Goal: pass <= 2x naive. Then a cProfile of the pass on a fresh copy.
(4) idlepass  a pass that finds nothing new on 10,000 recorded mails vs on 100 (median). Goal: <= 1.5x.
(5) lines     lines of pipeline/, tests/, bench/ (*.py) now vs at 22c4c63 (before issue 10).

It never fails on a missed goal: it reports. Every server is on 127.0.0.1 and stopped at the end; a run
that overstays --time-limit is stopped. See bench/README.md.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import platform
import pstats
import random
import shutil
import signal
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import codesize
import ledgerfill
import passprofile
import rig
from rig import fmt_s, say, servers, verdict

from pipeline.config import load_config
from pipeline.context import Context
from pipeline.worker.mailpass import PassSummary, run_pass

LATENCY_P90_GOAL = 5.0        # seconds
IDLE_RSS_GOAL = 200 * 2**20   # bytes, the whole tree
IDLE_CPU_GOAL = 1.0           # % of one core
BACKLOG_GOAL = 2.0            # pass time / naive time
IDLEPASS_GOAL = 1.5           # large / small
LIVE = 100                    # (4) mails recorded by a real pass; the rest through the ledger


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of them at or below it."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def summary_line(s: PassSummary) -> str:
    return f"fetched {s.fetched}, new {s.new}, states {s.states}, outbox {s.outbox}" + (f", error {s.error}" if s.error else "")


def context(workdir: Path, dc: Any, sink: rig.SinkProcess, folder: str) -> Context:
    return Context(load_config(rig.write_config(workdir, imap_port=dc.port, smtp_port=sink.port, folder=folder,
                                                smtp_limits=rig.NO_SEND_LIMITS)))


# ---------------------------------------------------------------------------------------------- (1) + (2)
def worker_run(dc: Any, base: Path, n: int, spacing: tuple[float, float], grace: float,
               idle_seconds: float | None) -> dict[str, Any]:
    say(f"(1) receipt latency: `intake run` at its defaults (IDLE on, poll every 5 min, 20 mails/min), "
        f"{n} mails {spacing[0]:g}–{spacing[1]:g} s apart")
    t, workbooks = timed(lambda: [rig.unit_workbook(10_000 + i) for i in range(n)])
    ids = [f"<bench-live-{i}-{os.getpid()}@mail.gmail.com>" for i in range(n)]
    mails = [(mid, rig.form_mail(sender, xlsx, mid)) for mid, (sender, xlsx) in zip(ids, workbooks)]
    say(f"  built {n} mails with distinct .xlsx forms in {fmt_s(t)}")
    out: dict[str, Any] = {}
    with rig.SinkProcess() as sink:
        cfg = rig.write_config(base / "run", imap_port=dc.port, smtp_port=sink.port)
        t0 = time.monotonic()
        w = rig.WorkerProcess(cfg, dc.password)
        try:
            # ready: IDLE entered, and the schedule's first poll and the IDLE connection's pass are over
            if not (w.wait_log("IDLE: waiting for mail", 1, 60) and w.wait_log("poll: ", 2, 60)):
                say("  WARNING: the worker did not say it waits on IDLE; its log:\n" + "".join(w.lines[-20:]))
            time.sleep(2)
            say(f"  worker ready in {fmt_s(time.monotonic() - t0)} (pid {w.proc.pid})")
            if n:
                out["latency"] = deliver(dc, sink, mails, spacing, grace)
            if idle_seconds:
                time.sleep(5)  # the last receipt's pass finishes marking its mail
                out["idle"] = sample_idle(w, idle_seconds)
        finally:
            rc = w.stop()
            problems = w.problems()
    say(f"  worker stopped (exit {rc}); warnings/errors in its log: {len(problems)}")
    for line in problems[:5]:
        say(f"    {line[:160]}")
    return out


def deliver(dc: Any, sink: rig.SinkProcess, mails: list[tuple[str, bytes]], spacing: tuple[float, float],
            grace: float) -> dict[str, Any]:
    rng = random.Random(10)
    appended: dict[str, float] = {}
    with dc.client() as c:  # one session: no login in the timing
        for i, (mid, raw) in enumerate(mails):
            if i:
                time.sleep(rng.uniform(*spacing))
            c.append("INBOX", raw)
            appended[mid] = time.time()  # APPEND answered OK: the mail is in the mailbox
        c.logout()
    deadline = time.monotonic() + grace
    while True:
        got = sink.replies()
        if all(mid in got for mid in appended) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    lat = sorted(got[mid] - at for mid, at in appended.items() if mid in got)
    missing = len(appended) - len(lat)
    every = lat + [math.inf] * missing  # a receipt that did not come counts as never
    res = {"n": len(appended), "missing": missing, "p50": percentile(every, 0.5), "p90": percentile(every, 0.9),
           "max": every[-1], "min": every[0]}
    say(f"  receipts: {len(lat)} of {len(appended)} within {grace:g} s of the last APPEND; "
        f"p50 {res['p50']:.2f} s, p90 {res['p90']:.2f} s, max {res['max']:.2f} s, min {res['min']:.2f} s")
    return res


def sample_idle(w: rig.WorkerProcess, seconds: float) -> dict[str, Any]:
    say(f"(2) the idle worker: its process tree sampled every second for {seconds:g} s")
    root = w.proc.pid
    passes_before = w.count("poll: ")
    cpu0 = {p: rig.cpu_seconds(p) for p in rig.process_tree(root)}
    t0 = time.monotonic()
    peak: dict[int, int] = {}
    totals: list[int] = []
    while True:
        rss = {p: rig.status_kib(p, "VmRSS") for p in rig.process_tree(root)}
        totals.append(sum(rss.values()))
        for p, kib in rss.items():
            peak[p] = max(peak.get(p, 0), kib)
        left = seconds - (time.monotonic() - t0)
        if left <= 0:
            break
        time.sleep(min(1.0, left))
    wall = time.monotonic() - t0
    pids = rig.process_tree(root)
    cpu = sum((now or 0.0) - (cpu0.get(p) or 0.0) for p in pids if (now := rig.cpu_seconds(p)) is not None)
    res = {"rss_max": max(totals) * 1024, "rss_mean": statistics.mean(totals) * 1024,
           "pss": sum(rig.pss_kib(p) for p in pids) * 1024, "cpu_pct": 100 * cpu / wall, "cpu_s": cpu,
           "wall": wall, "procs": {p: (rig.command_of(p), peak[p] * 1024) for p in peak},
           "passes": w.count("poll: ") - passes_before}
    each = ", ".join(f"{name} {b / 2**20:.0f} MiB" for name, b in res["procs"].values())
    say(f"  VmRSS of the tree: max {res['rss_max'] / 2**20:.0f} MiB, mean {res['rss_mean'] / 2**20:.0f} MiB "
        f"({each}; PSS at the end {res['pss'] / 2**20:.0f} MiB)")
    say(f"  CPU: {cpu:.2f} s in {wall:.0f} s = {res['cpu_pct']:.2f}% of a core; passes in the window: {res['passes']}")
    return res


# ---------------------------------------------------------------------------------------------- (3)
def naive_loop(dc: Any, folder: str) -> tuple[int, int]:
    """A FETCH RFC822 round trip per message, `email` to parse, pandas.read_excel for each .xlsx."""
    import email
    import email.policy

    import pandas as pd

    sheets = rows = 0
    with dc.client(timeout=60) as c:
        c.select_folder(folder, readonly=True)
        for uid in c.search(["ALL"]):
            raw = c.fetch([uid], [b"RFC822"])[uid][b"RFC822"]
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            for part in msg.iter_attachments():
                if (part.get_filename() or "").lower().endswith(".xlsx"):
                    # openpyxl is pandas' default for xlsx; naming it only silences the warning about calamine
                    df = pd.read_excel(io.BytesIO(part.get_content()), header=None, engine="openpyxl")
                    sheets += 1
                    rows += len(df)
        c.logout()
    return sheets, rows


def backlog(dc: Any, base: Path, n: int, profile: bool) -> dict[str, Any]:
    say(f"(3) backlog: {n} new mails from {len(set(rig.UNIT_NAMES.values()))} units, each with its own .xlsx form")
    t, workbooks = timed(lambda: [rig.unit_workbook(i) for i in range(n)])
    say(f"  built {n} distinct workbooks in {fmt_s(t)}")
    folders = ["Backlog", "Backlog-profiled"] if profile else ["Backlog"]
    for folder in folders:  # the same mails twice: the profiled pass starts from scratch too
        dc.append_many(rig.form_mails(workbooks, "backlog"), folder=folder, batch=200)
    import pandas  # noqa: F401 - imported before the timing, as pipeline is
    out: dict[str, Any] = {"n": n}
    with rig.SinkProcess() as sink:
        ctx = context(base / "backlog", dc, sink, "Backlog")
        out["pass"], s = timed(lambda: run_pass(ctx))
        sent = sink.count()
        ctx.store.engine.dispose()
        say(f"  pass:       {fmt_s(out['pass'])} ({n / out['pass']:.0f} msg/s); {summary_line(s)}; sink received {sent}")
        if s.new != n or s.states.get("processed") != n or sent != n:
            say(f"  WARNING: expected {n} new, {n} processed and {n} receipts at the sink")
        out["naive"], (sheets, rows) = timed(lambda: naive_loop(dc, "Backlog"))
        say(f"  naive loop: {fmt_s(out['naive'])} ({n / out['naive']:.0f} msg/s); {sheets} sheets read, {rows} rows")
        if profile:
            sink.clear()
            ctx = context(base / "backlog-profiled", dc, sink, "Backlog-profiled")
            prof = cProfile.Profile()
            t, s = timed(lambda: prof.runcall(run_pass, ctx))
            ctx.store.engine.dispose()
            say(f"  where the time goes (cProfile of a second pass on a fresh copy: {fmt_s(t)}, {s.new} new, "
                f"sink received {sink.count()}):")
            out["profile"] = passprofile.report(pstats.Stats(prof))
            for line in out["profile"]:
                say(line)
    return out


# ---------------------------------------------------------------------------------------------- (4)
def idle_passes(dc: Any, base: Path, sizes: list[int], repeats: int) -> dict[int, float]:
    say(f"(4) idle pass (nothing new) on {' vs '.join(f'{n:,}' for n in sizes)} recorded mails, median of {repeats}")
    contexts: dict[int, Context] = {}
    times: dict[int, list[float]] = {n: [] for n in sizes}
    with rig.SinkProcess() as sink:
        for n in sizes:
            folder = f"Idle{n}"
            mails = list(rig.small_mails(n, f"idle{n}"))
            t, _ = timed(lambda: dc.append_many(mails, folder=folder, batch=500))
            sink.clear()
            ctx = contexts[n] = context(base / f"idle{n}", dc, sink, folder)
            # all but the last LIVE through the ledger (fast), the last LIVE through a real pass
            bulk = mails[:max(0, n - LIVE)]
            t_fill, filled = timed(lambda: ledgerfill.record_answered(ctx, dc, folder, bulk) if bulk else 0)
            t_rec, s = timed(lambda: run_pass(ctx))
            say(f"  {n:>6,}: appended in {fmt_s(t)}; {filled:,} recorded through the ledger in {fmt_s(t_fill)}, "
                f"{s.new} by a pass in {fmt_s(t_rec)} ({s.states}, {sink.count()} receipts)")
            if filled + s.new != n or s.error:
                say(f"          WARNING: expected {n:,} recorded and no error: {summary_line(s)}")
            run_pass(ctx)  # warm-up, as a long-running worker is
        # the sizes take turns, so that the machine's changing load falls on both alike
        selects: dict[int, list[float]] = {n: [] for n in sizes}
        for _ in range(repeats):
            for n, ctx in contexts.items():
                t, s = timed(lambda: run_pass(ctx))
                if s.fetched or s.error:
                    say(f"          WARNING: the idle pass was not idle: {summary_line(s)}")
                times[n].append(t)
                with dc.client() as c:  # the server's share: the first SELECT of a session, as in a pass
                    selects[n].append(timed(lambda: c.select_folder(f"Idle{n}", readonly=True))[0])
                    c.logout()
    for n, ctx in contexts.items():
        ctx.store.engine.dispose()
        say(f"  {n:>6,}: idle pass median {fmt_s(statistics.median(times[n]))} "
            f"(min {fmt_s(min(times[n]))}, max {fmt_s(max(times[n]))}); of which Dovecot's SELECT ≈ "
            f"{fmt_s(statistics.median(selects[n]))}")
    return {"median": {n: statistics.median(ts) for n, ts in times.items()},
            "select": {n: statistics.median(ts) for n, ts in selects.items()}}

# ---------------------------------------------------------------------------------------------- main
def _overstayed(_signum: int, _frame: Any) -> None:
    raise TimeoutError("the bench overstayed --time-limit")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--only", choices=("latency", "idle", "backlog", "idlepass", "lines"), default=None)
    ap.add_argument("--mails", type=int, default=None, help="(1) mails delivered to the worker (default 30; quick 6)")
    ap.add_argument("--spacing", default="3,4", help="(1) seconds between two mails, min,max (default 3,4: ≤ 20 a "
                                                      "minute, the default smtp.per_minute)")
    ap.add_argument("--idle-seconds", type=float, default=None, help="(2) sampling window (default 60; quick 10)")
    ap.add_argument("--backlog", type=int, default=None, help="(3) backlog size (default 600; quick 60)")
    ap.add_argument("--no-profile", action="store_true", help="(3) skip the profiled second pass")
    ap.add_argument("--idle-sizes", default=None, help="(4) recorded mails, small,large (default 100,10000; quick 100,1000)")
    ap.add_argument("--repeats", type=int, default=None, help="(4) idle passes timed per size, taking turns (default 21; quick 7)")
    ap.add_argument("--time-limit", type=float, default=None, help="minutes before the run is stopped (default 45; quick 10)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (databases, archives)")
    args = ap.parse_args(argv)
    q = args.quick
    spacing = tuple(float(x) for x in args.spacing.split(","))
    assert len(spacing) == 2, "--spacing min,max"
    sizes = [int(x) for x in (args.idle_sizes or ("100,1000" if q else "100,10000")).split(",")]
    want = {args.only} if args.only else {"latency", "idle", "backlog", "idlepass", "lines"}
    signal.signal(signal.SIGALRM, _overstayed)
    signal.alarm(int(60 * (args.time_limit or (10 if q else 45))))

    say(f"intake bench, {datetime.now().astimezone():%Y-%m-%d %H:%M %z}; {'quick' if q else 'full'} run")
    say(f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average {rig.load()} (other sessions' work on this machine moves every figure)")
    say(f"code: {codesize.git_describe()}")
    res: dict[str, Any] = {}
    if "lines" in want:
        say(f"(5) lines of *.py, at {codesize.BEFORE} (before issue 10) → now (working tree)")
        res["lines"] = codesize.lines(("pipeline", "tests", "bench", "intake_demo"))
        for d, (before, now) in res["lines"].items():
            say(f"  {d + '/':<13} {before:>6,} → {now:>6,}  ({now - before:+,})")
        say()
    if want - {"lines"}:
        if not servers.dovecot_available():
            say(servers.INSTALL_HINT)
            return 2
        base = Path(tempfile.mkdtemp(prefix="intake-bench-"))
        try:
            with servers.Dovecot() as dc:
                os.environ[rig.PW_ENV] = dc.password
                say(f"Dovecot on 127.0.0.1:{dc.port}, work dir {base}")
                if want & {"latency", "idle"}:
                    n = args.mails if args.mails is not None else (6 if q else 30)
                    # (2) alone still sends the worker 3 mails first: an idle worker has read forms before
                    res.update(worker_run(dc, base, n if "latency" in want else 3, spacing, 30 if q else 60,
                                          (args.idle_seconds or (10 if q else 60)) if "idle" in want else None))
                    if "latency" not in want:
                        res.pop("latency", None)
                    say(f"  load average now {rig.load()}")
                    say()
                if "backlog" in want:
                    res["backlog"] = backlog(dc, base, args.backlog or (60 if q else 600), not args.no_profile)
                    say(f"  load average now {rig.load()}")
                    say()
                if "idlepass" in want:
                    res["idlepass"] = idle_passes(dc, base, sizes, args.repeats or (7 if q else 21))
                    say(f"  load average now {rig.load()}")
                    say()
        finally:
            signal.alarm(0)
            if args.keep:
                say(f"work dir kept: {base}")
            else:
                shutil.rmtree(base, ignore_errors=True)
    print_figures(res)
    return 0


def print_figures(res: dict[str, Any]) -> None:
    say("=" * 100)
    say("FIGURES")
    if "latency" in res:
        r = res["latency"]
        unanswered = f" ({r['missing']} unanswered)" if r["missing"] else ""
        say(f"  (1) receipt latency, {r['n']} mails: p50 {r['p50']:.2f} s, p90 {r['p90']:.2f} s, max {r['max']:.2f} s"
            f"{unanswered}   goal p90 ≤ {LATENCY_P90_GOAL:g} s → {verdict(r['p90'] <= LATENCY_P90_GOAL)}")
    if "idle" in res:
        r = res["idle"]
        say(f"  (2) idle worker over {r['wall']:.0f} s: RSS of the tree max {r['rss_max'] / 2**20:.0f} MiB   goal ≤ "
            f"{IDLE_RSS_GOAL / 2**20:.0f} MiB → {verdict(r['rss_max'] <= IDLE_RSS_GOAL)}; CPU {r['cpu_pct']:.2f}% of a core"
            f"   goal ≤ {IDLE_CPU_GOAL:g}% → {verdict(r['cpu_pct'] <= IDLE_CPU_GOAL)}")
    if "backlog" in res:
        r = res["backlog"]
        ratio = r["pass"] / r["naive"]
        say(f"  (3) backlog of {r['n']}: pass {fmt_s(r['pass'])}, naive loop {fmt_s(r['naive'])}: {ratio:.2f}x"
            f"   goal ≤ {BACKLOG_GOAL:g}x → {verdict(ratio <= BACKLOG_GOAL)}")
    if "idlepass" in res:
        med, sel = res["idlepass"]["median"], res["idlepass"]["select"]
        small, large = min(med), max(med)
        ratio = med[large] / med[small]
        say(f"  (4) idle pass: {fmt_s(med[small])} at {small:,} recorded, {fmt_s(med[large])} at {large:,}: "
            f"{ratio:.2f}x   goal ≤ {IDLEPASS_GOAL:g}x → {verdict(ratio <= IDLEPASS_GOAL)}")
        say(f"      without Dovecot's SELECT (it reads the Maildir of the folder): "
            f"{(med[large] - sel[large]) / (med[small] - sel[small]):.2f}x")
    if "lines" in res:
        say("  (5) lines of *.py, before → now: " + "; ".join(f"{d}/ {b:,} → {n:,}" for d, (b, n) in res["lines"].items()))
    say(f"  load average at the end: {rig.load()}")


if __name__ == "__main__":
    raise SystemExit(main())
