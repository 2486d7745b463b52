"""`intake demo` on nothing configured: embedded IMAP + SMTP, sample mail, one pass, results on disk."""
from __future__ import annotations

import email
import json
import subprocess
import sys
from email import policy
from pathlib import Path

import pytest

pytestmark = pytest.mark.servers


def test_demo_runs_a_full_pass_and_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # nothing configured, no passwords in the environment
    proc = subprocess.run([sys.executable, "-m", "pipeline", "demo", "--out", str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(out / "export.json") in proc.stdout
    data = json.loads((out / "export.json").read_text(encoding="utf-8"))
    states = sorted(m["state"] for m in data["messages"])
    assert states.count("processed") >= 4 and "quarantined" in states and "ignored" in states
    docs = [d for m in data["messages"] for d in m["documents"]]
    assert {"registration", "summary", "report"} <= {d["kind"] for d in docs}
    assert any(d["state"] == "rejected" and d["issues"] for d in docs)
    sent = sorted((out / "sent").glob("*.eml"))
    assert len(sent) == states.count("processed")
    first = email.message_from_bytes(sent[0].read_bytes(), policy=policy.default)
    assert first["In-Reply-To"] and "Kính gửi" in first.get_body(("plain",)).get_content()
    assert "== CẦN XỬ LÝ" in (out / "status.txt").read_text(encoding="utf-8")
