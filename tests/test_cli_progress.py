"""`intake poll` shows a bar while a backlog comes in, on a terminal only (real Dovecot, real pty)."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import DISTRICT, Harness
from intake_demo import samplemail
from ptyrun import run_on_pty


def _poll(h: Harness, on_pty: bool) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "INTAKE_NO_PROGRESS"}
    env.update(INTAKE_TEST_IMAP_PW=h.dovecot.password, PYTHONIOENCODING="utf-8")
    cmd = [sys.executable, "-m", "pipeline", "--config", str(h.cfg_path), "poll"]
    if not on_pty:
        p = subprocess.run(cmd, capture_output=True, env=env, timeout=120)
        return p.returncode, p.stdout.decode(), p.stderr.decode()
    return run_on_pty(cmd, env)


def test_poll_draws_a_bar_on_a_terminal_and_nothing_on_a_pipe(intake: Harness) -> None:
    for i in range(12):
        intake.deliver(samplemail.gmail_message(f"la{i}@yahoo.com", DISTRICT, f"Thư {i}", "x",
                                                message_id=f"<p{i}@x>"))
    code, out, shown = _poll(intake, on_pty=True)
    assert code == 0 and "new 12" in out
    assert "Đang nhận thư" in shown and "12thư" in shown.replace(" ", "")
    for i in range(12, 15):
        intake.deliver(samplemail.gmail_message(f"la{i}@yahoo.com", DISTRICT, f"Thư {i}", "x",
                                                message_id=f"<p{i}@x>"))
    code, out, err = _poll(intake, on_pty=False)
    assert code == 0 and "new 3" in out
    assert "Đang nhận thư" not in err and "\r" not in err
