"""Content-addressed archive of raw messages: <root>/ab/cdef….eml, written durably."""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

from pipeline import childproc

log = logging.getLogger(__name__)

_COUNTER = iter(range(1, 1 << 62))
_COUNTER_LOCK = threading.Lock()


def _tmp_name(digest: str) -> str:
    with _COUNTER_LOCK:
        n = next(_COUNTER)
    return f".tmp-{digest[:16]}-{os.getpid()}-{n}.eml"


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
_POOL_PID = 0


def _all(fn: Callable[[object], None], items: Iterable[object]) -> None:
    """fn on every item, several at once: fsyncs issued together share the file system's journal commits
    (about 3x less time for a batch than one after the other here). Raises the first error, after all ran."""
    items = list(items)
    if len(items) < 2:
        for item in items:
            fn(item)
        return
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or _POOL_PID != os.getpid():
            _POOL, _POOL_PID = ThreadPoolExecutor(max_workers=8, thread_name_prefix="archive-fsync"), os.getpid()
        pool = _POOL
    futures = [pool.submit(fn, item) for item in items]
    errors = [f.exception() for f in futures]
    for exc in errors:
        if exc is not None:
            raise exc


def _holds(target: Path, raw: bytes, digest: str) -> bool:
    """Is ``target`` already a whole copy of ``raw``? (Same size first: reading back is the rare case.)"""
    try:
        if os.stat(target).st_size != len(raw):
            return False
        return hashlib.sha256(target.read_bytes()).hexdigest() == digest
    except OSError:
        return False


def _load_syncfs():  # type: ignore[no-untyped-def]
    """libc's syncfs(2) (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_SYNCFS = _load_syncfs()


def _syncfs(root: Path) -> bool:
    """Flush the whole file system holding ``root`` (data and metadata); False if that could not be done."""
    if _SYNCFS is None:
        return False
    try:
        fd = os.open(root, os.O_RDONLY)
    except OSError:
        return False
    try:
        return _SYNCFS(fd) == 0
    finally:
        os.close(fd)


def _fsync_path(path: Path) -> None:
    """fsync of a file or a directory, by its path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)



def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old file or the new one, never a part,
    and the new one survives a crash: temporary file, fsync, rename, fsync of the directory."""
    import tempfile

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


class Archive:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._dirs: set[Path] = set()  # directories known to exist (made or seen by this process)

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.eml"

    def put(self, raw: bytes) -> tuple[str, Path]:
        """Store raw bytes durably; return (sha256, path). Idempotent: same bytes, same file."""
        return self.put_many([raw])[0]

    def put_many(self, raws: Sequence[bytes], *, sync_filesystem: bool = False) -> list[tuple[str, Path]]:
        """Store several messages durably; return (sha256, path) for each, in order.

        Every file is written to a temporary name and renamed into place, and is on disk before this
        returns; nothing is recorded before that. Two ways to get there:

        - by default each file is fsync'd before its rename, then each directory that received a file is
          fsync'd once (the rename is only durable once the directory entry is on disk too);
        - ``sync_filesystem=True`` (a backlog's batches, in the writer process): the files are renamed
          unsynced and ONE ``syncfs`` of the archive's file system makes all of them durable together —
          about a fifth of the CPU of a hundred fsyncs, and the same guarantee. Where syncfs is missing
          or fails, the files and directories are fsync'd one by one instead.

        Idempotent: a file already at its name is kept only if its content is exactly these bytes (read
        back and hashed: a crash before the barrier may leave a file that is not whole), else rewritten.
        """
        out: list[tuple[str, Path]] = []
        pending: list[tuple[int, str, Path]] = []  # (fd, tmp path, target)
        seen: set[Path] = set()
        made: set[Path] = set()
        try:
            for raw in raws:
                digest = hashlib.sha256(raw).hexdigest()
                target = self.path_for(digest)
                out.append((digest, target))
                if target in seen:
                    continue  # the same bytes twice in one batch
                seen.add(target)
                if _holds(target, raw, digest):
                    continue
                parent = target.parent
                if parent not in self._dirs:
                    try:
                        parent.mkdir(parents=True)
                        made.add(parent.parent)  # a new directory's own entry must reach the disk too
                    except FileExistsError:
                        pass
                    self._dirs.add(parent)
                tmp = str(parent / _tmp_name(digest))
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
                try:
                    fd = os.open(tmp, flags, 0o600)
                except FileNotFoundError:  # the directory went away under us
                    parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(tmp, flags, 0o600)
                pending.append((fd, tmp, target))
                view = memoryview(raw)
                while view:
                    view = view[os.write(fd, view):]
            if not pending:
                return out
            whole_fs = sync_filesystem and len(pending) > 1 and _SYNCFS is not None
            if not whole_fs:
                _all(os.fsync, [fd for fd, _tmp, _target in pending])  # type: ignore[arg-type]
            dirs: dict[Path, None] = {}
            renamed: list[Path] = []
            while pending:
                fd, tmp, target = pending.pop(0)
                os.close(fd)
                try:
                    os.replace(tmp, target)
                except BaseException:
                    _unlink(tmp)
                    raise
                renamed.append(target)
                dirs[target.parent] = None
            if whole_fs and _syncfs(self.root):
                return out
            if whole_fs:  # syncfs failed: the same guarantee, one file and directory at a time
                _all(_fsync_path, renamed)  # type: ignore[arg-type]
            _all(_fsync_path, [*dirs, *made])  # type: ignore[arg-type]
        finally:
            for fd, tmp, _target in pending:
                try:
                    os.close(fd)
                except OSError:
                    pass
                _unlink(tmp)
        return out

    def get(self, digest: str) -> bytes:
        data = self.path_for(digest).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise OSError(f"archived copy {digest} is corrupt")
        return data


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# --------------------------------------------------------------------------------------------
# A writer process for backlogs
# --------------------------------------------------------------------------------------------
class ArchiveWriter:
    """``Archive.put_many`` run in a child process: the same files, on disk before it returns (one syncfs per batch).

    Why: writing a batch is a few hundred system calls (create, write, fsync, rename, directory fsync).
    In the pass's process each of them hands the interpreter lock back and forth with the threads that
    process and send; a backlog then waits on its own archive. In a child the writes cost the pass
    nothing but a pipe. The caller gets control back only when every file and directory is on disk, as
    with ``put_many``. If the child cannot be used (it died, it cannot start), the batch is written here.

    Protocol over the child's stdin/stdout: 8-byte big-endian length, then a pickle: request
    ``(root, [raw, ...])``, reply ``("ok", [(sha256, path), ...])`` or ``("error", text)``.
    """

    def __init__(self) -> None:
        self._proc: "subprocess.Popen[bytes] | None" = None
        self._broken = False
        self._lock = threading.Lock()

    def put_many(self, archive: Archive, raws: Sequence[bytes]) -> list[tuple[str, Path]]:
        with self._lock:
            proc = self._child()
            if proc is None:
                return archive.put_many(raws)
            try:
                assert proc.stdin is not None and proc.stdout is not None
                childproc.write_all(proc.stdin.fileno(), childproc.frame((str(archive.root), list(raws))))
                status, value = childproc.read_frame(proc.stdout.fileno(), None)
            except (OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
                self._give_up(f"{type(exc).__name__}: {exc}")
                return archive.put_many(raws)  # idempotent: what the child finished stays as it is
        if status != "ok":
            raise OSError(value)
        out = [(digest, Path(path)) for digest, path in value]
        for _digest, path in out:
            archive._dirs.add(path.parent)
        return out

    def _child(self) -> "subprocess.Popen[bytes] | None":
        if self._broken:
            return None
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        try:
            self._proc = childproc.spawn("from pipeline.archive import writer_main; writer_main()")
        except OSError as exc:
            self._give_up(str(exc))
            return None
        return self._proc

    def _give_up(self, why: str) -> None:
        log.warning("archive writer process given up (%s); writing in this process", why)
        self._broken = True
        if self._proc is not None:
            try:
                self._proc.kill()
                self._proc.wait(timeout=5)
            except Exception:  # noqa: BLE001
                pass


#: This process's archive writer (one child, started on first use).
writer = childproc.per_process(ArchiveWriter)


_ARCHIVES: dict[str, Archive] = {}  # in the writer process: one Archive per root it was asked to write to


def _write_request(request: tuple[str, list[bytes]]) -> tuple[str, object]:
    root, raws = request
    archive = _ARCHIVES.get(root) or _ARCHIVES.setdefault(root, Archive(Path(root)))
    try:
        stored = archive.put_many(raws, sync_filesystem=True)
    except Exception as exc:  # noqa: BLE001 - the parent raises it as the OSError it is
        return "error", f"{type(exc).__name__}: {exc}"
    return "ok", [(digest, str(path)) for digest, path in stored]


def writer_main() -> None:
    childproc.serve(_write_request)
