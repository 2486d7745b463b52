"""What holds people's names and addresses is readable by the service's user only (issue 14): the SQLite
ledger, the workbooks and the exports are 0600 whatever the umask the command started with."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_config

pytestmark = pytest.mark.servers  # runs `python -m pipeline`


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ledger_workbook_and_export_are_private(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, imap_port=1, smtp_port=2)
    env = {**os.environ, "INTAKE_TEST_IMAP_PW": "x"}

    def intake(*args: str) -> None:
        proc = subprocess.run([sys.executable, "-m", "pipeline", "--config", str(cfg), *args], env=env,
                              capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.umask(0o022))
        assert proc.returncode == 0, proc.stderr

    intake("export", "--out", str(tmp_path / "export.json"))
    intake("report", "--out", str(tmp_path / "reports"))
    db = tmp_path / "db" / "intake.sqlite3"
    workbooks = list((tmp_path / "reports").glob("*.xlsx"))
    assert workbooks, "the report wrote no workbook"
    for path in [db, tmp_path / "export.json", *workbooks]:
        assert _mode(path) == 0o600, f"{path.name}: {oct(_mode(path))}"


def test_a_new_sqlite_ledger_is_private_even_outside_the_cli(tmp_path: Path) -> None:
    from pipeline.ledger.store import Store

    old = os.umask(0o022)
    try:
        Store(f"sqlite:///{tmp_path / 'x' / 'intake.db'}").engine.dispose()
    finally:
        os.umask(old)
    assert _mode(tmp_path / "x" / "intake.db") == 0o600
