"""Progress bars for long CLI work: a tqdm bar on stderr when stderr is a terminal, nothing otherwise.

    with progress(len(uids), "Đang tải thư") as bar:
        for uid in uids:
            ...
            bar.update()

Quiet by itself under systemd, cron, a pipe or a log file (stderr is not a TTY), and whenever
``INTAKE_NO_PROGRESS`` is set to anything but ``""`` or ``0``. While a bar is shown, log lines are
written above it instead of through it. Output goes to stderr only: stdout stays clean for
``intake export`` and the like.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import IO, Any, Iterator, Protocol

ENV = "INTAKE_NO_PROGRESS"


class Bar(Protocol):
    n: int

    def update(self, n: int = 1) -> None: ...


class _Quiet:
    """Counts and says nothing."""

    def __init__(self) -> None:
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += n


class _Shown:
    def __init__(self, bar: Any) -> None:
        self._bar = bar

    @property
    def n(self) -> int:
        return int(self._bar.n)

    def update(self, n: int = 1) -> None:
        self._bar.update(n)


def enabled(stream: IO[str] | None = None) -> bool:
    """Whether a bar would be drawn on ``stream`` (stderr by default)."""
    if os.environ.get(ENV, "").strip() not in ("", "0"):
        return False
    stream = stream if stream is not None else sys.stderr
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError, OSError):  # closed or not a real file
        return False


@contextmanager
def progress(total: int | None, desc: str, *, unit: str = "thư") -> Iterator[Bar]:
    """A bar counting ``unit`` up to ``total`` (None: just a running count), or a silent stand-in."""
    stream = sys.stderr
    if not enabled(stream):
        yield _Quiet()
        return
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        width = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        width = 0
    # A terminal that reports no size (a serial console, a fresh pty) would get an empty bar: use 80.
    sizing: dict[str, Any] = {"dynamic_ncols": True} if width > 0 else {"ncols": 80, "nrows": 24}
    bar = tqdm(total=total, desc=desc, unit=unit, file=stream, mininterval=0.2, leave=True, **sizing)
    try:
        with logging_redirect_tqdm(tqdm_class=tqdm):
            yield _Shown(bar)
    finally:
        bar.close()
