"""The reading process: kept across documents, started anew when it dies, overruns, grows or needs
another memory limit; each document read with the Rules it was given; in-process reading on request."""
from __future__ import annotations

import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import formfiles as ff  # noqa: E402

from pipeline.forms import isolation, read_document  # noqa: E402
from intake_demo import samples
from pipeline.forms.rules import default_rules  # noqa: E402

UNIT_NAME = "Công đoàn Trường Tiểu học Ái Mộ"
E2 = [("Tổ Văn phòng", "Dọn vệ sinh ngõ xóm", "bvmt"), ("Nguyễn Văn An", "Vận động bàn giao mặt bằng", "gpmb")]
SMALL = samples.registration_xlsx(UNIT_NAME, E2)


def _codes(r):  # type: ignore[no-untyped-def]
    return [f.code for f in r.findings]


def test_the_child_is_kept_and_replaced_after_a_timeout() -> None:
    reader = isolation.reader()
    assert read_document("dk.xlsx", SMALL).state == "accepted"
    starts, pid = reader.starts, reader.proc.pid  # type: ignore[union-attr]
    for _ in range(3):
        assert read_document("dk.xlsx", SMALL).state == "accepted"
    assert (reader.starts, reader.proc.pid) == (starts, pid)  # type: ignore[union-attr]

    rules = default_rules()
    slow = replace(rules, limits={**rules.limits, "worker_timeout_seconds": 0.05})
    r = read_document("dang ky.xlsx", ff.big_registration(20_000), rules=slow)
    assert (r.kind, r.state, _codes(r)) == ("registration", "rejected", ["file-timeout"])
    assert r.findings[0].message and "0.05" in r.findings[0].message
    assert reader.proc is None  # the overrunning child was killed
    assert read_document("dk.xlsx", SMALL).state == "accepted"
    assert reader.starts == starts + 1


def test_a_child_killed_between_documents_is_replaced_without_a_finding() -> None:
    reader = isolation.reader()
    read_document("dk.xlsx", SMALL)
    assert reader.proc is not None
    os.kill(reader.proc.pid, signal.SIGKILL)
    reader.proc.wait()
    r = read_document("dk.xlsx", SMALL)
    assert (r.state, _codes(r)) == ("accepted", [])


def test_a_child_past_the_recycle_size_is_replaced_after_its_reply() -> None:
    rules = default_rules()
    tiny = replace(rules, limits={**rules.limits, "worker_recycle_rss_bytes": 1})
    reader = isolation.reader()
    reader.stop()
    starts = reader.starts
    for _ in range(2):
        r = read_document("dk.xlsx", SMALL, rules=tiny)
        assert (r.state, _codes(r)) == ("accepted", [])
        assert reader.proc is None and reader.last_stats["rss"] > 1
    assert reader.starts == starts + 2


def test_a_document_past_the_memory_limit_is_a_finding() -> None:
    """Under 48 MB of address space 20,000 rows do not fit (calamine aborts the child, or the reader gets a
    MemoryError): the document gets the finding, and the next document (default limit, 1 GiB) gets a child
    with that limit."""
    rules = default_rules()
    starved = replace(rules, limits={**rules.limits, "worker_memory_bytes": 48 * 2**20})
    r = read_document("dang ky.xlsx", ff.big_registration(20_000), rules=starved)
    assert (r.kind, r.state, _codes(r)) == ("registration", "rejected", ["file-too-large"])
    assert read_document("dk.xlsx", SMALL).state == "accepted"
    assert isolation.reader().memory_bytes == rules.limits["worker_memory_bytes"]


def test_the_reader_reads_with_the_rules_it_is_given_even_with_the_same_digest() -> None:
    """Rules made with dataclasses.replace keep the files' digest; the reading process must still use them
    (it once kept the first Rules object it was sent for a digest). max_findings_per_code is applied in the
    reading process only."""
    rules = default_rules()
    xlsx = samples.registration_xlsx("Công đoàn cơ quan UBND quận", [(f"Tổ {i}", "", "khac") for i in range(6)])
    first = read_document("dk.xlsx", xlsx, rules=rules)
    tight = replace(rules, limits={**rules.limits, "max_findings_per_code": 2})
    assert tight.digest == rules.digest
    second = read_document("dk.xlsx", xlsx, rules=tight)
    again = read_document("dk.xlsx", xlsx, rules=rules)
    assert _codes(first).count("empty-model") == 6 and again == first
    assert _codes(second).count("empty-model") == 2


def test_in_process_reading_gives_the_same_readings_without_the_child() -> None:
    reader = isolation.reader()
    files = [("dk.xlsx", SMALL), ("dk.docx", samples.registration_docx(UNIT_NAME, E2)),
             ("x.xlsx", ff.corrupt_zip(SMALL)), ("bom.xlsx", ff.zip_bomb(60)), ("anh.png", b"\x89PNG\r\n\x1a\n")]
    isolated = [read_document(name, data, subject="Đăng ký") for name, data in files]
    reader.stop()
    starts = reader.starts
    inline = [read_document(name, data, subject="Đăng ký", isolated=False) for name, data in files]
    assert inline == isolated
    assert reader.proc is None and reader.starts == starts
    assert [r.state for r in inline] == ["accepted", "accepted", "rejected", "rejected", "needs_review"]


def test_a_service_stop_sigterm_does_not_kill_the_reader_mid_document() -> None:
    """systemd's stop sends SIGTERM to every process of the service: the reader finishes the document in
    hand (a unit's good file must not come back as 'too large'); it leaves when the worker closes its pipe."""
    reader = isolation.reader()
    assert read_document("dk.xlsx", SMALL).state == "accepted"
    proc = reader.proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGTERM)
    assert read_document("dk.xlsx", SMALL).state == "accepted"
    assert reader.proc is proc and proc.poll() is None
    reader.stop()
    assert proc.wait(timeout=10) is not None
