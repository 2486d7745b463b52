"""MIME parsing in a second process, for backlogs: the pass hands over a batch's raw messages as soon as
they are recorded and takes each ParsedMail when it gets to that message.

Why: the pass runs in one Python process whose threads (processing, staging the next batch, sending
receipts) share one interpreter lock, so on a backlog that process is the bottleneck while the other
core has room. Parsing (``mime.parse_message``) is pure and self-contained: bytes in, a picklable
ParsedMail out, so it moves to a child without changing any result.

The child is started on first use (``python -c``, no multiprocessing machinery: nothing of the parent's
``__main__`` is re-imported) and kept for the life of the process. Protocol over its stdin/stdout:
8-byte big-endian length, then a pickle; requests ``(seq, raw, trusted_authserv_ids)``, replies
``(seq, "ok", ParsedMail)`` or ``(seq, "parse-error"|"error", text)``. A writer thread feeds the requests
so that neither side can block the other on a full pipe. If the child dies or stops answering, the
messages still waiting are parsed in the calling process, exactly as without the pool.
"""
from __future__ import annotations

import logging
import pickle
import queue
import subprocess
import threading
import time
from typing import Any, Iterable, Sequence

from pipeline import childproc, mime
from pipeline.errors import MessageParseError
from pipeline.model import ParsedMail

log = logging.getLogger(__name__)
#: How long one message may take in the child before the pool is given up (the rest is parsed here).
REPLY_TIMEOUT = 120.0
_KEEP = 2000  # replies kept for tickets not yet asked for (a few batches ahead at most)


class Ticket:
    """One message handed to the pool; ``result()`` is its ParsedMail (or raises what parsing raised)."""

    __slots__ = ("pool", "seq", "raw", "trusted")

    def __init__(self, pool: "ParsePool", seq: int, raw: bytes, trusted: tuple[str, ...]) -> None:
        self.pool, self.seq, self.raw, self.trusted = pool, seq, raw, trusted

    def result(self) -> ParsedMail:
        return self.pool._result(self)

    def discard(self) -> None:
        """Its result will not be asked for: the reply is dropped when it comes."""
        self.pool._discard(self.seq)


class ParsePool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._broken = False
        self._seq = 0
        self._requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._done: dict[int, tuple[str, Any]] = {}
        self._read_upto = 0  # the highest seq whose reply was read from the child
        self._unwanted: set[int] = set()  # tickets discarded before their reply came
        self._read_lock = threading.Lock()

    # -- the child -------------------------------------------------------------------------------
    def _start(self) -> bool:
        if self._broken:
            return False
        if self._proc is not None and self._proc.poll() is None:
            return True
        try:
            self._proc = childproc.spawn("from pipeline.parsepool import child_main; child_main()")
        except OSError as exc:
            log.warning("parse process not started (%s); parsing in this process", exc)
            self._broken = True
            return False
        self._requests = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, args=(self._proc, self._requests),
                                        name="intake-parse-feed", daemon=True)
        self._writer.start()
        return True

    @staticmethod
    def _write_loop(proc: subprocess.Popen[bytes], requests: "queue.SimpleQueue[bytes | None]") -> None:
        assert proc.stdin is not None
        fd = proc.stdin.fileno()
        while True:
            frame = requests.get()
            if frame is None:
                return
            try:
                childproc.write_all(fd, frame)
            except OSError:  # the child is gone: the reader side notices and falls back
                return

    def _give_up(self, why: str) -> None:
        log.warning("parse process given up (%s); parsing in this process", why)
        self._broken = True
        proc = self._proc
        if proc is not None:
            try:
                proc.kill()
                proc.wait(timeout=5)
            except Exception:  # noqa: BLE001
                pass
        self._requests.put(None)

    # -- the API ---------------------------------------------------------------------------------
    def submit(self, raws: Iterable[bytes], trusted_authserv_ids: Sequence[str] = ()) -> list[Ticket]:
        """Hand messages over; their tickets, in the same order. Never raises: without a child, each
        ticket parses its message here when asked."""
        trusted = tuple(trusted_authserv_ids)
        tickets: list[Ticket] = []
        with self._lock:
            started = self._start()
            for raw in raws:
                self._seq += 1
                ticket = Ticket(self, self._seq, raw, trusted)
                tickets.append(ticket)
                if started:
                    self._requests.put(childproc.frame((ticket.seq, raw, trusted)))
        return tickets

    def _result(self, ticket: Ticket) -> ParsedMail:
        got = self._take(ticket.seq)
        if got is None:
            return mime.parse_message(ticket.raw, trusted_authserv_ids=ticket.trusted)
        status, value = got
        if status == "ok":
            return value
        if status == "parse-error":
            raise MessageParseError(value)
        # A bug in parsing: parsed again here, so that it raises exactly what it raises without the pool.
        log.warning("parsing failed in the parse process (%s); parsing again here", value)
        return mime.parse_message(ticket.raw, trusted_authserv_ids=ticket.trusted)

    def _discard(self, seq: int) -> None:
        with self._read_lock:
            if self._done.pop(seq, None) is None and seq > self._read_upto:
                self._unwanted.add(seq)

    def _take(self, seq: int) -> tuple[str, Any] | None:
        """The child's reply for ``seq`` (replies come in order: earlier ones are kept for their tickets);
        None when the child cannot give it."""
        with self._read_lock:
            if seq in self._done:
                return self._done.pop(seq)
            if seq <= self._read_upto:  # its reply was read and taken (or dropped) already: never wait for it
                return None
            proc = self._proc
            if self._broken or proc is None or proc.stdout is None:
                return None
            fd = proc.stdout.fileno()
            while True:
                try:
                    got_seq, status, value = childproc.read_frame(fd, time.monotonic() + REPLY_TIMEOUT)
                except (EOFError, TimeoutError, OSError, pickle.UnpicklingError, ValueError) as exc:
                    self._give_up(type(exc).__name__)
                    return None
                self._read_upto = max(self._read_upto, got_seq)
                if got_seq == seq:
                    return status, value
                if got_seq in self._unwanted:
                    self._unwanted.discard(got_seq)
                    continue
                self._done[got_seq] = (status, value)
                if got_seq > seq:  # this one's reply was dropped unasked (see _KEEP): parse it here
                    return None
                if len(self._done) > _KEEP:  # replies nobody took (a batch abandoned after an error)
                    for old in sorted(self._done)[: len(self._done) - _KEEP]:
                        del self._done[old]

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
            self._requests.put(None)
        if proc is not None:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(timeout=5)
            except Exception:  # noqa: BLE001
                proc.kill()


#: The process's parse pool (one child, started on first use).
pool = childproc.per_process(ParsePool)


def _parse_request(request: tuple[int, bytes, tuple[str, ...]]) -> tuple[int, str, Any]:
    seq, raw, trusted = request
    try:
        return seq, "ok", mime.parse_message(raw, trusted_authserv_ids=trusted)
    except MessageParseError as exc:
        return seq, "parse-error", str(exc)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a bug in parsing
        return seq, "error", f"{type(exc).__name__}: {exc}"


def child_main() -> None:
    childproc.serve(_parse_request)
