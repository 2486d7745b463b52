"""Content-addressed archive of raw messages: <root>/ab/cdef….eml, each written durably before it is recorded."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Sequence


def _fsync_path(path: Path) -> None:
    """fsync of a file or a directory, by its path (a rename is durable only once its directory is)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old file or the new one, never a part,
    and the new one survives a crash: temporary file, fsync, rename, fsync of the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_path(path.parent)


def _holds(target: Path, raw: bytes, digest: str) -> bool:
    """Is ``target`` already a whole copy of ``raw``? A crash mid-write may have left a file that is not."""
    try:
        if target.stat().st_size != len(raw):
            return False
        return hashlib.sha256(target.read_bytes()).hexdigest() == digest
    except OSError:
        return False


class Archive:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.eml"

    def put(self, raw: bytes) -> tuple[str, Path]:
        """Store raw bytes durably; return (sha256, path). Idempotent: same bytes, same file."""
        digest = hashlib.sha256(raw).hexdigest()
        target = self.path_for(digest)
        if _holds(target, raw, digest):
            # Left by a pass that died before recording it, maybe before its rename reached the disk.
            _fsync_path(target.parent)
        else:
            write_atomically(target, raw)  # file and its directory
        _fsync_path(self.root)  # the shard directory's own entry (made now, or by a pass that died)
        return digest, target

    def put_many(self, raws: Sequence[bytes]) -> list[tuple[str, Path]]:
        """Store several messages durably, one after the other; (sha256, path) for each, in order."""
        return [self.put(raw) for raw in raws]

    def get(self, digest: str) -> bytes:
        data = self.path_for(digest).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise OSError(f"archived copy {digest} is corrupt")
        return data
