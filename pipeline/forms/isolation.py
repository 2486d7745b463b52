"""The reading process: a long-lived child with a memory limit, re-used across calls.

Why: a 4.8 KB sheet with cells at A1 and XFD1048576 makes calamine abort the whole process
(SIGABRT, tafia/calamine#693), and a 300 MB shared string costs gigabytes in any reader. No
``except`` catches that, so every read happens in a child under RLIMIT_AS and a timeout. The child
is started once and kept (a small form then costs a pipe round trip, ~1 ms), restarted after it
dies, overruns or grows past a resident-memory threshold. A killed child is a finding on that
document; the caller never dies.

Protocol over the child's stdin/stdout: 8-byte big-endian length, then a pickle.
Request (rules_digest, rules_or_None, core.Request as a tuple of its fields, see ``_pack_request``) →
reply (DocumentReading as a tuple of its fields, see ``_pack``, stats dict).

Several documents can be in flight (``Worker.session()``): the parent writes the next requests while
the child reads the current one, so a batch of mail does not pay a round trip per document and the
child reads while the parent parses the next message. The child still reads one document at a time,
in order; each document has the whole timeout from the moment the child can start on it, and when the
child dies or overruns, that document gets the finding and the ones queued behind it go to a fresh child.
``submit`` writes requests in groups of ``_GROUP`` and reads the replies that arrived at the same time
(``result`` writes whatever waits): see ``Session._write_only``.
"""
from __future__ import annotations

import dataclasses
import logging
import operator
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import Any

from pipeline import childproc
from pipeline.forms.core import Request, fail, parse
from pipeline.model import DocumentReading, Entry, Finding, Unit
from pipeline.rules import Rules

log = logging.getLogger(__name__)
_LEN = struct.Struct(">Q")


class WorkerDied(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason  # "timeout" | "crashed"
        self.detail = detail


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    try:
        return childproc.read_exact(fd, n, deadline)
    except TimeoutError:
        raise WorkerDied("timeout") from None


_write_all = childproc.write_all


_STATM: dict[int, int] = {}  # pid → its /proc/self/statm kept open: pread at 0 re-reads it (open+read+close ~10 us)


def _rss_bytes() -> int:
    try:
        pid = os.getpid()
        fd = _STATM.get(pid)
        if fd is None:
            fd = _STATM[pid] = os.open(f"/proc/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC)
        return int(os.pread(fd, 256, 0).split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


# ---------------------------------------------------------------- the reply
# A reading goes back as plain tuples of its fields: pickling frozen dataclasses costs a class
# reference, a __dict__ and a BUILD per Entry and Finding (child ~5 us, parent ~7 us for a small form);
# tuples cost about half on each side, and the parent rebuilds the same objects the way pickle does
# (object.__new__, then the instance dict, so no __init__ runs). Anything else is pickled as it is.
_READING_FIELDS = tuple(f.name for f in dataclasses.fields(DocumentReading))
_ENTRY_FIELDS = tuple(f.name for f in dataclasses.fields(Entry))
_FINDING_FIELDS = tuple(f.name for f in dataclasses.fields(Finding))
_reading_values = operator.attrgetter(*_READING_FIELDS)
_entry_values = operator.attrgetter(*_ENTRY_FIELDS)
_finding_values = operator.attrgetter(*_FINDING_FIELDS)
_AT_ENTRIES, _AT_FINDINGS = _READING_FIELDS.index("entries"), _READING_FIELDS.index("findings")


def _pack(reading: DocumentReading) -> Any:
    entries, findings = reading.entries, reading.findings
    if (not _PACK or type(reading) is not DocumentReading or type(entries) is not tuple or type(findings) is not tuple
            or not all(type(e) is Entry for e in entries) or not all(type(f) is Finding for f in findings)):
        return reading
    values = list(_reading_values(reading))
    values[_AT_ENTRIES] = tuple(map(_entry_values, entries))
    values[_AT_FINDINGS] = tuple(map(_finding_values, findings))
    return tuple(values)


def _build(cls: type, names: tuple[str, ...], values: Any) -> Any:
    obj = object.__new__(cls)
    obj.__dict__.update(zip(names, values))
    return obj


def _unpack(packed: Any) -> DocumentReading:
    if type(packed) is not tuple:
        return packed  # type: ignore[no-any-return]
    values = list(packed)
    values[_AT_ENTRIES] = tuple([_build(Entry, _ENTRY_FIELDS, v) for v in values[_AT_ENTRIES]])
    values[_AT_FINDINGS] = tuple([_build(Finding, _FINDING_FIELDS, v) for v in values[_AT_FINDINGS]])
    return _build(DocumentReading, _READING_FIELDS, values)  # type: ignore[no-any-return]


# A request goes the same way: (fmt, filename, data, subject, unit fields or None, year).
_REQUEST_FIELDS = tuple(f.name for f in dataclasses.fields(Request))
_UNIT_FIELDS = tuple(f.name for f in dataclasses.fields(Unit))
_request_values = operator.attrgetter(*_REQUEST_FIELDS)
_unit_values = operator.attrgetter(*_UNIT_FIELDS)
_AT_UNIT = _REQUEST_FIELDS.index("unit")


def _pack_request(req: Request) -> Any:
    unit = req.unit
    if not _PACK or type(req) is not Request or not (unit is None or type(unit) is Unit):
        return req
    values = list(_request_values(req))
    values[_AT_UNIT] = None if unit is None else _unit_values(unit)
    return tuple(values)


def _unpack_request(packed: Any) -> Request:
    if type(packed) is not tuple:
        return packed  # type: ignore[no-any-return]
    values = list(packed)
    if values[_AT_UNIT] is not None:
        values[_AT_UNIT] = _build(Unit, _UNIT_FIELDS, values[_AT_UNIT])
    return _build(Request, _REQUEST_FIELDS, values)  # type: ignore[no-any-return]


def _packing_works() -> bool:
    """Whether the model's classes still rebuild this way (not if they gain __slots__, for one)."""
    try:
        sample = DocumentReading("registration", None, "accepted", entries=(Entry("collective", "a", "b", ("gpmb",)),),
                                 findings=(Finding("c", "error", "m", "S!A1", 1, "A"),), unit_line="u", format="xlsx")
        packed = _pack(sample)
        back = _unpack(pickle.loads(pickle.dumps(packed)))
        req = Request("xlsx", "a.xlsx", b"PK", "s", Unit("u1", "U", "hcsn", ("a@b.c",)), 2022)
        packed_req = _pack_request(req)
        back_req = _unpack_request(pickle.loads(pickle.dumps(packed_req)))
        return (type(packed) is tuple and back == sample and repr(back) == repr(sample)
                and type(packed_req) is tuple and back_req == req and repr(back_req) == repr(req))
    except Exception:  # noqa: BLE001
        return False


_PACK = True
_PACK = _packing_works()


# ---------------------------------------------------------------- child side
def child_main() -> None:
    import resource

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 2**30
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):
        pass
    rin, wout = sys.stdin.fileno(), sys.stdout.fileno()
    # Nothing else may write to the protocol pipe.
    sys.stdout = sys.stderr
    rules_cache: dict[str, Rules] = {}
    # Import the readers now, so the first document does not pay for it.
    import python_calamine  # noqa: F401
    import lxml.etree  # noqa: F401

    while True:
        try:
            (n,) = _LEN.unpack(_read_exact(rin, _LEN.size, None))
            digest, rules, packed = pickle.loads(_read_exact(rin, n, None))
            req = _unpack_request(packed)
        except EOFError:
            return
        if rules is not None:
            rules_cache.clear()
            rules_cache[digest] = rules
        rules = rules_cache[digest]
        t0 = time.perf_counter()
        try:
            reading = parse(req, rules)
        except MemoryError:
            reading = fail(rules, "file-too-large", req.fmt, "không đủ bộ nhớ để đọc")
        stats = {
            "seconds": time.perf_counter() - t0,
            "rss": _rss_bytes(),
            "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        }
        try:
            payload = pickle.dumps((_pack(reading), stats), protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            payload = pickle.dumps((fail(rules, "file-too-large", req.fmt, "kết quả quá lớn"), stats))
        _write_all(wout, _LEN.pack(len(payload)) + payload)


# ---------------------------------------------------------------- parent side
class Worker:
    """One child process, serialised by a lock; restarted on demand."""

    def __init__(self, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid_owner = 0
        self.rules_digest: str | None = None
        self.rules_sent: Rules | None = None  # the Rules object the child holds
        self.lock = threading.Lock()
        self.last_stats: dict[str, Any] = {}
        self.starts = 0

    def _start(self) -> subprocess.Popen[bytes]:
        proc = childproc.spawn("from pipeline.forms.isolation import child_main; child_main()",
                               str(self.memory_bytes), stderr=subprocess.DEVNULL)
        self.proc, self.pid_owner, self.rules_digest, self.rules_sent = proc, os.getpid(), None, None
        self.starts += 1
        return proc

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or self.pid_owner != os.getpid():
            return
        try:
            proc.kill()
        except OSError:
            pass
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass

    def ensure(self) -> subprocess.Popen[bytes]:
        proc = self.proc
        if proc is None or self.pid_owner != os.getpid() or proc.poll() is not None:
            if proc is not None and self.pid_owner == os.getpid():
                self.stop()
            proc = self._start()
        return proc

    def run(self, req: Request, rules: Rules, timeout: float) -> DocumentReading:
        with self.session() as session:
            return session.result(session.submit(req, rules, timeout))

    def session(self) -> Session:
        """Several requests in flight to the child (one thread at a time: holds the worker's lock)."""
        return Session(self)


_GROUP = 8  # requests written together, replies read together, while submitting (see Session._write_only)
_OUT_FILL = 1 << 16  # requests are moved to the write buffer while it holds less than this
_F_SETPIPE_SZ = 1031  # Linux fcntl: a bigger pipe lets more requests and replies wait in it


class Job:
    """One document sent (or to be sent) to the child."""

    __slots__ = ("req", "rules", "timeout", "reading", "died", "error", "began")

    def __init__(self, req: Request, rules: Rules, timeout: float) -> None:
        self.req, self.rules, self.timeout = req, rules, timeout
        self.reading: DocumentReading | None = None
        self.died: WorkerDied | None = None
        self.error: Exception | None = None  # the request could not even be sent (a bug, not the file)
        self.began = 0.0  # when its request started to go out

    @property
    def done(self) -> bool:
        return self.reading is not None or self.died is not None or self.error is not None


class Session:
    """Requests written while replies are read, over non-blocking pipes, all from the calling thread."""

    def __init__(self, worker: Worker) -> None:
        self.w = worker
        self.queued: list[Job] = []  # not yet written
        self.inflight: list[Job] = []  # written (or being written), not yet answered; the child works on [0]
        self.out = bytearray()  # what is left to write of the last ones in inflight
        self.inbuf = bytearray()
        self.free_since = 0.0  # when the child finished its last reply
        self.proc: subprocess.Popen[bytes] | None = None
        self.unread = 0  # submits since the replies were last looked at

    def __enter__(self) -> Session:
        self.w.lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.inflight or self.out:  # abandoned mid-protocol: the child's pipe is in an unknown state
                self.w.stop()
        finally:
            self.w.lock.release()

    def submit(self, req: Request, rules: Rules, timeout: float) -> Job:
        job = Job(req, rules, timeout)
        self.queued.append(job)
        self._pump(block=False)
        return job

    def result(self, job: Job) -> DocumentReading:
        while not job.done:
            if job not in self.queued and job not in self.inflight:
                raise RuntimeError("document not submitted in this session")
            self._pump(block=True)
        if job.error is not None:
            raise job.error
        if job.died is not None:
            raise job.died
        assert job.reading is not None
        return job.reading

    # -- the protocol ----------------------------------------------------------------------
    def _child(self) -> subprocess.Popen[bytes]:
        if self.proc is not None:
            return self.proc  # the child our requests went to: if it died, reading says so (EOF)
        proc = self.w.ensure()
        if proc is not self.proc:
            self.proc = proc
            self.out.clear()
            self.inbuf.clear()
            self.free_since = time.monotonic()
            assert proc.stdin is not None and proc.stdout is not None
            for fd in (proc.stdin.fileno(), proc.stdout.fileno()):
                os.set_blocking(fd, False)
                if sys.platform.startswith("linux"):
                    try:
                        import fcntl

                        fcntl.fcntl(fd, _F_SETPIPE_SZ, 1 << 20)
                    except OSError:
                        pass
        return proc

    def _next_request(self) -> None:
        job = self.queued.pop(0)
        rules = job.rules
        # Sent again whenever it is another Rules object: one made with dataclasses.replace (other limits,
        # say) keeps the files' digest, and the child would go on with the old one.
        send_rules = rules if self.w.rules_digest != rules.digest or self.w.rules_sent is not rules else None
        try:
            payload = pickle.dumps((rules.digest, send_rules, _pack_request(job.req)), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - that document's problem, not the session's
            job.error = exc
            return
        self.w.rules_digest, self.w.rules_sent = rules.digest, rules
        self.out += _LEN.pack(len(payload))
        self.out += payload
        job.began = time.monotonic()
        self.inflight.append(job)

    def _deadline(self) -> float | None:
        if not self.inflight:
            return None
        head = self.inflight[0]
        return max(head.began, self.free_since) + head.timeout

    def _pump(self, *, block: bool) -> None:
        """Write what can be written, read what has arrived; with ``block``, wait until something happens."""
        if not (self.queued or self.inflight):
            return
        if not block and self._write_only():
            return
        proc = self._child()
        assert proc.stdin is not None and proc.stdout is not None
        wfd, rfd = proc.stdin.fileno(), proc.stdout.fileno()
        self.unread = 0
        while True:
            while self.queued and len(self.out) < _OUT_FILL:
                self._next_request()
            if not self.inflight:
                return
            deadline = self._deadline()
            wait = 0.0
            if block:
                wait = max(0.0, deadline - time.monotonic()) if deadline is not None else 0.0
            try:
                readable, writable, _ = select.select([rfd] if self.inflight else [],
                                                      [wfd] if self.out else [], [], wait)
            except (OSError, ValueError) as exc:
                self._died(WorkerDied("crashed", _describe_exit(self._exit_code(proc))), exc)
                return
            progress = False
            if writable:
                try:
                    n = os.write(wfd, self.out[: 1 << 20])
                except BlockingIOError:
                    n = 0
                except OSError as exc:  # the child is gone
                    self._died(WorkerDied("crashed", _describe_exit(self._exit_code(proc))), exc)
                    return
                del self.out[:n]
                progress = progress or n > 0
            if readable:
                try:
                    chunk = os.read(rfd, self._read_size())
                except BlockingIOError:
                    chunk = None
                except OSError as exc:
                    self._died(WorkerDied("crashed", _describe_exit(self._exit_code(proc))), exc)
                    return
                if chunk == b"":
                    self._died(WorkerDied("crashed", _describe_exit(self._exit_code(proc))), EOFError())
                    return
                if chunk:
                    self.inbuf += chunk
                    progress = True
                    if self._replies():
                        return  # a reply arrived (and maybe the child was recycled)
            if deadline is not None and time.monotonic() >= deadline and not readable:
                self._died(WorkerDied("timeout"), None)
                return
            if not block and (not progress or not (readable or self.out or self.queued)):
                return  # nothing more to do now: no need to ask select again
            if block and progress and not self.inflight and not self.queued:
                return

    def _write_only(self) -> bool:
        """submit's pump most of the time: the request waits in ``queued``, the replies wait in the pipe.
        Every _GROUP submits the whole pump runs instead (False), and also when bytes are still waiting to
        be written or when the first document in flight is past its time (the whole pump reads what is
        there before calling it a timeout); ``result`` always runs it. The whole pump writes the waiting
        requests in one go and reads the replies that arrived, several in one read.

        Why: the parent, parsing mail, is the busy side and the child mostly waits for work. A request
        written on its own wakes the idle child, and waking another CPU costs the writer ~10-20 us on a
        VM; each reply read on its own costs a select, a read and a parse. In groups, the child still gets
        each document long before the parent asks for its result."""
        self._child()  # started now if needed, so that it boots while the parent goes on
        if self.out:
            return False
        self.unread += 1
        if self.unread >= _GROUP:
            return False
        deadline = self._deadline()
        return deadline is None or time.monotonic() < deadline

    def _read_size(self) -> int:
        """How much to ask os.read for: what the reply being received still needs (at most 1 MiB), at least
        64 KiB. os.read allocates the whole size it is given, so asking 1 MiB for a 1 KB reply costs an
        mmap and munmap each time (~15 us), more than the rest of the round trip."""
        if len(self.inbuf) >= _LEN.size:
            (n,) = _LEN.unpack_from(self.inbuf)
            return min(max(_LEN.size + n - len(self.inbuf), 1 << 16), 1 << 20)
        return 1 << 16

    def _replies(self) -> bool:
        got = False
        while len(self.inbuf) >= _LEN.size:
            (n,) = _LEN.unpack_from(self.inbuf)
            if len(self.inbuf) < _LEN.size + n:
                break
            body = bytes(self.inbuf[_LEN.size:_LEN.size + n])
            del self.inbuf[:_LEN.size + n]
            job = self.inflight.pop(0)
            try:
                packed, stats = pickle.loads(body)
                reading = _unpack(packed)
            except Exception as exc:  # noqa: BLE001 - a garbled reply: treat the child as dead
                self.inflight.insert(0, job)
                self._died(WorkerDied("crashed", _describe_exit(None)), exc)
                return True
            job.reading = reading
            self.free_since = time.monotonic()
            self.w.last_stats = stats
            got = True
            if stats.get("rss", 0) > job.rules.limits["worker_recycle_rss_bytes"]:
                self._restart()
                return True
        return got

    def _exit_code(self, proc: subprocess.Popen[bytes]) -> int | None:
        code = proc.poll()
        if code is None:
            try:
                code = proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                code = None
        return code

    def _died(self, died: WorkerDied, cause: BaseException | None) -> None:
        """The document the child was on gets the finding; the ones behind it go to a fresh child."""
        if self.inflight:
            head = self.inflight.pop(0)
            head.died = died
            if cause is not None:
                died.__cause__ = cause
        self._restart()

    def _restart(self) -> None:
        self.queued[:0] = self.inflight
        self.inflight.clear()
        self.out.clear()
        self.inbuf.clear()
        self.w.stop()
        self.proc = None


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "tiến trình đọc không phản hồi"
    if code < 0:
        try:
            return f"tiến trình đọc bị dừng ({signal.Signals(-code).name})"
        except ValueError:
            return f"tiến trình đọc bị dừng (tín hiệu {-code})"
    return f"tiến trình đọc thoát với mã {code}"


_WORKER: Worker | None = None
_WORKER_LOCK = threading.Lock()


def worker(rules: Rules) -> Worker:
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            import atexit

            _WORKER = Worker(rules.limits["worker_memory_bytes"])
            atexit.register(_WORKER.stop)
        return _WORKER


def _in_process() -> bool:
    return os.environ.get("INTAKE_FORMS_INPROCESS") == "1" or sys.platform == "win32"


def _finding_for(died: WorkerDied, req: Request, rules: Rules) -> DocumentReading:
    if died.reason == "timeout":
        return fail(rules, "file-timeout", req.fmt, f"quá {rules.limits['worker_timeout_seconds']} giây")
    return fail(rules, "file-too-large", req.fmt, died.detail)


def isolated_parse(req: Request, rules: Rules) -> DocumentReading:
    if _in_process():
        return parse(req, rules)
    w = worker(rules)
    try:
        return w.run(req, rules, float(rules.limits["worker_timeout_seconds"]))
    except WorkerDied as died:
        return _finding_for(died, req, rules)


class IsolatedBatch:
    """``isolated_parse`` for several documents at once: ``submit`` each (it returns at once, the child
    starts on it), then ``result`` each. Use as a context manager; one thread at a time."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.session: Session | None = None if _in_process() else worker(rules).session()

    def __enter__(self) -> IsolatedBatch:
        if self.session is not None:
            self.session.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.session is not None:
            self.session.__exit__(*exc)

    def submit(self, req: Request, rules: Rules) -> Any:
        if self.session is None:
            return parse(req, rules)
        return self.session.submit(req, rules, float(rules.limits["worker_timeout_seconds"]))

    def result(self, ticket: Any) -> DocumentReading:
        if isinstance(ticket, DocumentReading):
            return ticket
        assert self.session is not None
        try:
            return self.session.result(ticket)
        except WorkerDied as died:
            return _finding_for(died, ticket.req, ticket.rules)
