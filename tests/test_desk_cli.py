"""`intake desk` and `intake desk hash-password` as real processes; the desk inside `intake run`."""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from werkzeug.security import check_password_hash

from desk_helpers import offline_cfg  # noqa: F401  (fixture)
from desk_helpers import desk_section
from conftest import Harness
from intake_demo.embedded import free_port

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def _wait_line(proc: subprocess.Popen[str], needle: str, timeout: float = 30.0) -> str:
    """Read the process's stdout until a line contains ``needle``."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        if not sel.select(timeout=0.2):
            if proc.poll() is not None:
                break
            continue
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} not printed; stdout: {''.join(seen)!r}; "
                         f"stderr: {proc.stderr.read() if proc.stderr and proc.poll() is not None else ''!r}")


def _get(url: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return urllib.request.urlopen(url, timeout=5)
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _stop(proc: subprocess.Popen[str], timeout: float = 20.0) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def test_hash_password_reads_stdin_and_prints_a_werkzeug_hash() -> None:
    r = subprocess.run([sys.executable, "-m", "pipeline", "desk", "hash-password"], input="mat-khau-dai-2022\n",
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    digest = r.stdout.strip()
    assert digest.startswith(("scrypt:", "pbkdf2:"))
    assert check_password_hash(digest, "mat-khau-dai-2022")
    assert "mat-khau-dai-2022" not in r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "pipeline", "desk", "hash-password"], input="ngan\n",
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 1 and "ít nhất 8 ký tự" in r.stderr


def test_intake_desk_serves_until_sigterm(offline_cfg: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "--config", str(offline_cfg), "desk", "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=_env())
    try:
        line = _wait_line(proc, f"http://127.0.0.1:{port}/")
        assert "Liên đoàn Lao động quận Long Biên" in line
        resp = _get(f"http://127.0.0.1:{port}/login")
        assert resp.status == 200
        body = resp.read().decode("utf-8")
        assert "Đăng nhập" in body and 'name="csrf_token"' in body
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["Server"] == "intake-desk"
        # a page that needs a session sends the browser to the log-in page
        resp = _get(f"http://127.0.0.1:{port}/review")
        assert resp.url.endswith("/login?next=/review")
        # a POST without a session is refused
        req = urllib.request.Request(f"http://127.0.0.1:{port}/reports/send", data=b"date=2022-02-25", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 403
    finally:
        rc = _stop(proc)
    assert rc == 0
    out = proc.stdout.read() if proc.stdout else ""
    assert "Đã dừng" in out


def test_intake_desk_refuses_a_taken_port(offline_cfg: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "pipeline", "--config", str(offline_cfg), "desk", "--port",
                            str(port)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2
    assert f"không mở được cổng 127.0.0.1:{port}" in r.stderr


def test_intake_run_serves_the_desk_when_enabled(intake: Harness, tmp_path: Path) -> None:
    port = free_port()
    data = yaml.safe_load(intake.cfg_path.read_text(encoding="utf-8"))
    data["desk"] = desk_section(enabled=True, port=port)
    intake.cfg_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    env = _env(INTAKE_TEST_IMAP_PW=intake.dovecot.password)
    log = tmp_path / "run.log"  # a file, not a pipe: a pipe nobody reads would stall the worker's logging
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "--config", str(intake.cfg_path), "run",
                                 "--poll-seconds", "1"], stdout=sink, stderr=subprocess.STDOUT, text=True,
                                cwd=ROOT, env=env)
        try:
            resp = _get(f"http://127.0.0.1:{port}/login", timeout=40)
            assert resp.status == 200 and "Đăng nhập" in resp.read().decode("utf-8")
        finally:
            rc = _stop(proc, 60)
    err = log.read_text(encoding="utf-8")
    assert rc == 0, err
    assert f"desk serving on http://127.0.0.1:{port}/" in err
    assert "worker stopped cleanly" in err
    # the port is free again once the worker stopped
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
