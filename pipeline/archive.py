"""Content-addressed archive of raw messages: <root>/ab/cdef….eml, written durably."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class Archive:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.eml"

    def put(self, raw: bytes) -> tuple[str, Path]:
        """Store raw bytes durably; return (sha256, path). Idempotent: same bytes, same file."""
        digest = hashlib.sha256(raw).hexdigest()
        target = self.path_for(digest)
        if target.exists() and target.stat().st_size == len(raw):
            return digest, target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".eml")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        # The rename is only durable once the directory entry is on disk too.
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return digest, target

    def get(self, digest: str) -> bytes:
        data = self.path_for(digest).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise OSError(f"archived copy {digest} is corrupt")
        return data
