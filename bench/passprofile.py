"""Where a pass's time goes: a cProfile of it, summed into the steps a mail goes through.

A step is a set of functions (by file or name); its time is the cumulative time of the calls the project's
own code makes into it from outside it, so a step's own inner calls are not counted twice. The steps do not call one another, so their
times add up; what is left is the pass's own Python (triage, deadlines, the loop) and anything unlisted.
The form reader works in a child process: cProfile sees the wait for its answer, i.e. the round trip.
"""
from __future__ import annotations

import pstats
from typing import Callable

Func = tuple[str, int, str]  # (file, line, function name), as pstats keys them


def _in(*parts: str) -> Callable[[Func], bool]:
    return lambda f: any(p in f[0].replace("\\", "/") for p in parts)


STEPS: list[tuple[str, Callable[[Func], bool]]] = [
    ("IMAP (login, select, search, fetch, mark)", _in("/pipeline/mail/mailbox.py")),
    ("archive (write + fsync per message)", _in("/pipeline/mail/archive.py")),
    ("MIME parse", _in("/pipeline/mail/mime.py")),
    ("form reader round trip", _in("/pipeline/forms/")),
    ("database (SQLite via SQLAlchemy)", _in("/pipeline/ledger/")),
    ("receipt composing (Jinja + email)", lambda f: f[2] == "receipt_item"),
    ("SMTP conversation", _in("/smtplib.py")),
]


def _entered(stats: dict, inside: Callable[[Func], bool]) -> float:
    """Cumulative time of the calls into a step made by the project's own code outside it. Calls through
    the standard library (contextlib, next(), list()) are left out: their callers are counted instead,
    and a step's own generators resumed through them would otherwise count twice."""
    total = 0.0
    for func, (_cc, _nc, _tt, _ct, callers) in stats.items():
        if inside(func):
            total += sum(v[3] for caller, v in callers.items() if _OURS(caller) and not inside(caller))
    return total


_OURS = _in("/pipeline/")


def _name(f: Func) -> str:
    path = f[0].replace("\\", "/")
    for marker in ("/pipeline/", "/site-packages/", "/lib/python3"):
        if marker in path:
            path = path[path.index(marker) + 1:]
            break
    return f[2] if f[0] == "~" else f"{path}:{f[2]}"


def report(prof: pstats.Stats, top: int = 10) -> list[str]:
    """Lines: each step's seconds and share of the pass, then the top functions by cumulative time."""
    stats: dict = prof.stats  # type: ignore[attr-defined]
    passes = [v for f, v in stats.items() if f[2] == "run_pass"]
    total = sum(v[3] for v in passes) or prof.total_tt  # type: ignore[attr-defined]
    lines = [f"    {'step':<44} {'s':>7} {'share':>6}"]
    listed = 0.0
    for label, inside in STEPS:
        t = _entered(stats, inside)
        listed += t
        lines.append(f"    {label:<44} {t:7.2f} {t / total:6.0%}")
    fsync = sum(v[2] for f, v in stats.items() if "fsync" in f[2])
    lines.append(f"    {'the rest (triage, plan, the loop itself)':<44} {total - listed:7.2f} {(total - listed) / total:6.0%}")
    lines.append(f"    {'whole pass, profiled':<44} {total:7.2f}   (of which os.fsync {fsync:.2f} s)")
    # the pass's own frame functions hold everything: they say nothing about where the time goes
    skeleton = {"run_pass", "fetch_new", "process_batch", "prepare_message", "send", "recover"}
    ranked = sorted((v[3], f) for f, v in stats.items()
                    if not (f[2] in skeleton and "mailpass" in f[0]) and "_lsprof" not in f[2])
    lines.append(f"    top {top} by cumulative time:")
    for ct, f in reversed(ranked[-top:]):
        lines.append(f"      {ct:6.2f} s  {_name(f)}")
    return lines
