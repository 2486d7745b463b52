"""The archive: content-addressed files, durable and idempotent, never trusting a file that is not whole."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pipeline.mail.archive import Archive, write_atomically


def _raws(n: int, tag: str) -> list[bytes]:
    return [f"Message-ID: <{tag}-{i}@x>\r\nSubject: thư {i}\r\n\r\n".encode() + os.urandom(3000) for i in range(n)]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_each_message_lands_at_its_hash_once_and_reads_back(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "a")
    raws = _raws(5, "x")
    got = archive.put_many(raws + raws[:2])  # the same bytes twice: the same file
    assert [d for d, _p in got] == [hashlib.sha256(r).hexdigest() for r in raws + raws[:2]]
    assert {p.name for p in (tmp_path / "a").rglob("*.eml")} == {f"{d}.eml" for d, _p in got}
    assert len(_files(archive.root)) == 5  # no temporary file left behind
    assert [archive.get(d) for d, _p in got] == raws + raws[:2]


def test_a_file_left_half_written_at_its_name_is_rewritten(tmp_path: Path) -> None:
    """A crash mid-write can leave a file at its final name that is not whole: the right size is not
    enough, it is read back and rewritten."""
    archive = Archive(tmp_path / "a")
    raws = _raws(3, "half")
    for raw in raws:
        target = archive.path_for(hashlib.sha256(raw).hexdigest())
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"\0" * len(raw))  # the right size, not the content
    got = archive.put_many(raws)
    assert [p.read_bytes() for _d, p in got] == raws


def test_a_corrupt_copy_is_refused_when_read(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "a")
    digest, path = archive.put(b"Subject: x\r\n\r\nbody")
    path.write_bytes(b"Subject: y\r\n\r\nbody")
    with pytest.raises(OSError, match="corrupt"):
        archive.get(digest)


def test_write_atomically_replaces_the_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "d" / "units.csv"
    write_atomically(target, b"old")
    write_atomically(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert [p.name for p in target.parent.iterdir()] == ["units.csv"]
