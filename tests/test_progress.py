"""Progress bars: drawn on a terminal (a real pty), silent on a pipe or when INTAKE_NO_PROGRESS is set."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.progress import enabled, progress
from ptyrun import run_on_pty

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import logging, sys, time
from pipeline.progress import progress
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="LOG %(message)s")
with progress({total}, "Đang tải thư") as bar:
    for i in range(5):
        bar.update()
        if i == 2:
            logging.getLogger("pipeline").info("một dòng nhật ký")
        time.sleep(0.05)
print("xong", bar.n)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "INTAKE_NO_PROGRESS"}
    env.update(PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8", COLUMNS="100", **extra)
    return env


def _run_on_pty(total: str = "5", columns: int = 100, **env: str) -> tuple[str, str]:
    """Run the script with stderr on a pseudo-terminal of ``columns`` (0: no size reported);
    return (stdout, what the terminal showed)."""
    _code, out, shown = run_on_pty([sys.executable, "-c", SCRIPT.format(total=total)], _env(**env),
                                   columns=columns, cwd=ROOT, timeout=30)
    return out, shown


def test_a_bar_is_drawn_on_a_terminal() -> None:
    out, shown = _run_on_pty()
    assert out.strip() == "xong 5"
    assert "Đang tải thư" in shown and "5/5" in shown and "thư/s" in shown
    assert "\r" in shown                          # redrawn in place
    assert "LOG một dòng nhật ký" in shown         # the log line is written above the bar, whole


def test_a_terminal_without_a_size_still_gets_a_bar() -> None:
    out, shown = _run_on_pty(columns=0)
    assert out.strip() == "xong 5" and "Đang tải thư" in shown and "5/5" in shown


def test_without_a_total_it_counts() -> None:
    out, shown = _run_on_pty(total="None")
    assert out.strip() == "xong 5"
    assert "Đang tải thư: 5thư" in shown.replace("\r", "\n")


def test_quiet_on_a_pipe() -> None:
    res = subprocess.run([sys.executable, "-c", SCRIPT.format(total="5")], capture_output=True, env=_env(),
                         cwd=ROOT, timeout=60)
    assert res.returncode == 0 and res.stdout.decode().strip() == "xong 5"
    assert res.stderr.decode() == "LOG một dòng nhật ký\n"   # logs only, no bar


def test_quiet_on_a_terminal_when_asked() -> None:
    out, shown = _run_on_pty(INTAKE_NO_PROGRESS="1")
    assert out.strip() == "xong 5"
    assert "Đang tải thư" not in shown and "5/5" not in shown
    assert "LOG một dòng nhật ký" in shown


def test_in_process_on_a_captured_stream_it_is_silent(capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTAKE_NO_PROGRESS", raising=False)
    assert not enabled()
    with progress(3, "x") as bar:
        bar.update(2)
        bar.update()
    assert bar.n == 3
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("INTAKE_NO_PROGRESS", "0")   # "0" means not set
    with open("/dev/null", "w") as devnull:
        assert not enabled(devnull)
