"""archive.ArchiveWriter: Archive.put_many in a child process, for backlogs: the same files at the same
paths, errors raised as here, and a child that dies means writing here."""
from __future__ import annotations

import hashlib
import os
import signal
import stat
from pathlib import Path

import pytest

from pipeline.archive import Archive, ArchiveWriter


def _raws(n: int, tag: str) -> list[bytes]:
    return [f"Message-ID: <{tag}-{i}@x>\r\nSubject: thư {i}\r\n\r\n".encode() + os.urandom(3000) for i in range(n)]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_child_writes_what_put_many_writes(tmp_path: Path) -> None:
    raws = _raws(30, "same")
    raws.append(raws[3])  # the same bytes twice in one batch
    here, there = Archive(tmp_path / "here"), Archive(tmp_path / "there")
    writer = ArchiveWriter()
    try:
        got = writer.put_many(there, raws)
        assert writer._proc is not None and writer._proc.poll() is None and not writer._broken
    finally:
        if writer._proc is not None:
            writer._proc.kill()
    want = here.put_many(raws)
    assert [d for d, _p in got] == [d for d, _p in want] == [hashlib.sha256(r).hexdigest() for r in raws]
    assert [p.relative_to(there.root) for _d, p in got] == [p.relative_to(here.root) for _d, p in want]
    assert _files(there.root) == _files(here.root)  # no temporary files left either
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for _d, p in got)
    assert there.get(got[0][0]) == raws[0]


def test_an_error_in_the_child_is_raised_here(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocked = tmp_path / "file-not-dir"
        blocked.write_text("x")  # root ignores permissions: make the root an existing file instead
        root = blocked / "archive"
    else:
        root = tmp_path / "ro"
        root.mkdir(mode=0o500)
    writer = ArchiveWriter()
    try:
        with pytest.raises(OSError):
            writer.put_many(Archive(root), _raws(3, "err"))
        assert not writer._broken  # an error of the disk is not a broken child
        good = Archive(tmp_path / "good")
        assert len(writer.put_many(good, _raws(3, "after"))) == 3
    finally:
        if writer._proc is not None:
            writer._proc.kill()


def test_a_dead_child_is_replaced_and_no_child_means_writing_here(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    archive = Archive(tmp_path / "a")
    writer = ArchiveWriter()
    written: list[tuple[bytes, tuple[str, Path]]] = []
    try:
        raws = _raws(5, "one")
        written += zip(raws, writer.put_many(archive, raws))
        dead = writer._proc
        assert dead is not None
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        raws = _raws(5, "two")
        written += zip(raws, writer.put_many(archive, raws))
        assert writer._proc is not dead and not writer._broken  # a fresh child took over
    finally:
        if writer._proc is not None:
            writer._proc.kill()
    # a child that cannot start: the batch is written in this process
    monkeypatch.setattr("sys.executable", str(tmp_path / "no-such-python"))
    lone = ArchiveWriter()
    raws = _raws(5, "three")
    written += zip(raws, lone.put_many(archive, raws))
    assert lone._broken and lone._proc is None
    for raw, (digest, path) in written:
        assert path.read_bytes() == raw and digest == hashlib.sha256(raw).hexdigest()
    assert len(_files(archive.root)) == 15


def test_a_file_left_half_written_at_its_name_is_rewritten(tmp_path: Path) -> None:
    """A crash before the barrier can leave a file at its final name that is not whole: it is not trusted
    for having the right size, it is read back and rewritten."""
    archive = Archive(tmp_path / "a")
    raws = _raws(3, "half")
    for sync_fs in (False, True):
        for raw in raws:
            target = archive.path_for(hashlib.sha256(raw).hexdigest())
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"\0" * len(raw))  # the right size, not the content
        got = archive.put_many(raws, sync_filesystem=sync_fs)
        assert [p.read_bytes() for _d, p in got] == raws
        assert [archive.get(d) for d, _p in got] == raws


def test_the_file_system_barrier_is_there_on_linux() -> None:
    import sys

    from pipeline import archive

    if sys.platform.startswith("linux"):
        assert archive._SYNCFS is not None
        assert archive._syncfs(Path("/tmp"))
