"""The forms path's shortcuts give the answers of the slow ways they replace.

precheck reads the zip directory and a sheet's head with struct and zlib instead of zipfile; these tests
compare the two over real packages and thousands of broken copies of them (cut short, bytes changed in
the directory, the end record, the local headers and the data).
"""
from __future__ import annotations

import io
import random
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import formfiles as ff  # noqa: E402

from pipeline.forms import precheck, samples  # noqa: E402
from pipeline.rules import default_rules  # noqa: E402

UNIT_NAME = "Công đoàn Trường Tiểu học Ái Mộ"
E2 = [("Tổ Văn phòng", "Dọn vệ sinh ngõ xóm", "bvmt"), ("Nguyễn Văn An", "Vận động bàn giao mặt bằng", "gpmb")]
LIMITS = default_rules().limits
TIGHT = {**LIMITS, "max_rows": 5, "max_sheet_cells": 30, "max_zip_members": 8}

pytestmark = pytest.mark.skipif(not precheck._QUICK, reason="the quick zip reading is off with this zipfile")


def _packages() -> list[bytes]:
    xlsx = samples.registration_xlsx(UNIT_NAME, E2)
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as z, zipfile.ZipFile(io.BytesIO(xlsx)) as src:
        for info in src.infolist():
            z.writestr(info.filename, src.read(info))
    return [xlsx, stored.getvalue(), samples.registration_docx(UNIT_NAME, E2), ff.registration_ods(UNIT_NAME, E2),
            ff.with_macro(xlsx), ff.zip_bomb(1), ff.far_cell_sheet(), ff.far_cell_sheet(keep_dimension=False),
            ff.big_registration(300)]


def _verdicts(data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    out = []
    for quick in (True, False):
        monkeypatch.setattr(precheck, "_QUICK", quick)
        out.append([precheck.check(name, data, limits) for name in ("a.xlsx", "a.ods", "a")
                    for limits in (LIMITS, TIGHT)])
    return out[0], out[1]


def _mutations(base: bytes, rng: random.Random) -> bytes:
    d = bytearray(base)
    first = d.find(b"PK\x01\x02")
    r = rng.random()
    if r < 0.35 and first > 0:  # the central directory and the end record
        for _ in range(rng.choice((1, 1, 2, 3))):
            d[rng.randrange(first, len(d))] = rng.randrange(256)
    elif r < 0.7:  # anywhere: local headers, compressed data
        for _ in range(rng.choice((1, 1, 2, 5))):
            d[rng.randrange(len(d))] = rng.randrange(256)
    elif r < 0.85:  # a download cut short
        d = d[: rng.randrange(len(d))]
    else:  # a flag, method or size field of one directory entry or local header
        heads = [i for i in range(len(d) - 4) if d[i:i + 4] in (b"PK\x01\x02", b"PK\x03\x04")]
        pos = rng.choice(heads) + rng.randrange(4, 30)
        d[min(pos, len(d) - 1)] = rng.choice((0, 1, 8, 0x20, 0x40, 0xFF, rng.randrange(256)))
    return bytes(d)


def test_quick_precheck_gives_zipfiles_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(20221)
    packages = _packages()
    seen_quick = 0
    for base in packages:
        quick, slow = _verdicts(base, monkeypatch)
        assert quick == slow
    for i in range(1500):
        data = _mutations(packages[i % len(packages)], rng)
        quick, slow = _verdicts(data, monkeypatch)
        assert quick == slow, (i, quick, slow)
        seen_quick += precheck._quick_directory(data) is not None
    assert seen_quick > 300  # the shortcut itself was exercised, not only its fallback


def test_quick_directory_and_head_match_zipfile() -> None:
    rng = random.Random(7)
    packages = _packages()
    for i in range(1500):
        data = packages[i % len(packages)] if i < len(packages) else _mutations(packages[i % len(packages)], rng)
        parts = precheck._quick_directory(data)
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
        except Exception:  # noqa: BLE001
            assert parts is None
            continue
        if parts is None:
            continue
        infos = zf.infolist()
        assert parts == [(z.filename, z.flag_bits, z.file_size, z.compress_size, z.compress_type, z.header_offset,
                          z.CRC) for z in infos]
        for part, info in zip(parts, infos):
            try:
                with zf.open(info) as fh:
                    want: bytes | None = fh.read(4096)
            except Exception:  # noqa: BLE001
                want = None
            head = precheck._quick_head(data, part)
            assert head is None or head == want
            for limits in (LIMITS, TIGHT):
                if precheck._quick_dimension_fine(data, part, limits):
                    assert precheck._check_dimension(zf, info, limits) is None


def test_unusual_packages_are_left_to_zipfile(monkeypatch: pytest.MonkeyPatch) -> None:
    xlsx = samples.registration_xlsx(UNIT_NAME, E2)
    with zipfile.ZipFile(io.BytesIO(xlsx)) as src:
        parts = [(i.filename, src.read(i)) for i in src.infolist()]
    commented, z64 = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(commented, "w", zipfile.ZIP_DEFLATED) as z:
        z.comment = b"PK\x05\x06 in a comment"
        for name, body in parts:
            z.writestr(name, body)
    with zipfile.ZipFile(z64, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in parts:
            with z.open(name, "w", force_zip64=True) as fh:
                fh.write(body)
    prefixed = xlsx[:4] + b"\0" * 8 + xlsx  # data before the zip: zipfile's "concat"
    assert precheck._quick_directory(commented.getvalue()) is None
    assert precheck._quick_directory(prefixed) is None
    for data in (commented.getvalue(), z64.getvalue(), prefixed):
        quick, slow = _verdicts(data, monkeypatch)
        assert quick == slow
    far = ff.far_cell_sheet()
    assert precheck.check("x.xlsx", far, LIMITS).problem == "file-too-large"
    assert replace(precheck.check("x.xlsx", xlsx, LIMITS)) == precheck.Verdict("xlsx")


# ------------------------------------------------------------------------------------------- the round trip
def test_batches_longer_than_a_group_read_like_read_document() -> None:
    """Requests go to the reader in groups and replies are read several at a time: a batch of more than
    one group, with a file that kills the reader and one that precheck refuses, reads as one by one."""
    from pipeline.forms import DocumentBatch, isolation, read_document

    good = samples.registration_xlsx(UNIT_NAME, E2)
    files = [(f"dk{i}.xlsx", good) for i in range(2 * isolation._GROUP + 3)]
    files[5] = ("x.xlsx", ff.far_cell_sheet(keep_dimension=False))  # the reader dies on it
    files[11] = ("bom.xlsx", ff.zip_bomb(60))
    files[12] = ("dk.docx", samples.registration_docx(UNIT_NAME, E2))
    with DocumentBatch(default_rules()) as batch:
        tickets = [batch.submit(name, data, subject="Đăng ký", year=2022) for name, data in files]
        got = [batch.result(t) for t in tickets]
    want = [read_document(name, data, subject="Đăng ký", year=2022) for name, data in files]
    assert got == want
    assert [f.code for f in got[5].findings] == ["file-too-large"]
    assert sum(r.state == "accepted" for r in got) == len(files) - 2


def test_timeout_inside_a_group_is_that_documents_finding() -> None:
    from pipeline.forms.core import Request
    from pipeline.forms.isolation import WorkerDied, worker

    rules = default_rules()
    w = worker(rules)
    small = Request("xlsx", "dk.xlsx", samples.registration_xlsx(UNIT_NAME, E2), "", None, 2022)
    slow = Request("xlsx", "dang ky.xlsx", ff.big_registration(20_000), "", None, 2022)
    with w.session() as session:
        jobs = [session.submit(small, rules, 30.0) for _ in range(3)]
        jobs.append(session.submit(slow, rules, 0.05))
        jobs += [session.submit(small, rules, 30.0) for _ in range(10)]
        states = []
        for job in jobs:
            try:
                states.append(session.result(job).state)
            except WorkerDied as died:
                states.append(died.reason)
    assert states == ["accepted"] * 3 + ["timeout"] + ["accepted"] * 10


def test_the_reader_reads_with_the_rules_it_is_given_even_with_the_same_digest():
    """Rules made with dataclasses.replace keep the files' digest; the reading process must still use them
    (it once kept the first Rules object it was sent for a digest). max_findings_per_code is applied in the
    reading process only."""
    from dataclasses import replace

    from pipeline.forms import read_document, samples
    from pipeline.rules import default_rules

    rules = default_rules()
    xlsx = samples.registration_xlsx("Công đoàn cơ quan UBND quận", [(f"Tổ {i}", "", "khac") for i in range(6)])
    first = read_document("dk.xlsx", xlsx, rules=rules)
    tight = replace(rules, limits={**rules.limits, "max_findings_per_code": 2})
    assert tight.digest == rules.digest
    second = read_document("dk.xlsx", xlsx, rules=tight)
    again = read_document("dk.xlsx", xlsx, rules=rules)
    assert [f.code for f in first.findings].count("empty-model") == 6 and again == first
    assert [f.code for f in second.findings].count("empty-model") == 2
