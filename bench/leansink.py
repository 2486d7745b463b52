"""A lean but real SMTP server for the bench: an RFC 5321 subset on loopback that counts what it receives.

The test suite's sink (tests/servers.py ``SmtpSink``, aiosmtpd) reads DATA line by line through asyncio
streams: ~0.55 ms of CPU per message, which on a 2-core machine competes with the pass being measured
(in production the SMTP server is Gmail's, whose CPU is not ours). This one is an ``asyncio.Protocol``:
each TCP read is appended to one buffer, commands are split off with ``bytes.find`` and the end of the
content (CRLF "." CRLF) found with one ``find`` over what came in since the last look.

Run as its own process::

    python bench/leansink.py [--keep] [--no-pipelining] [--max-size BYTES]

The first stdout line is the port (bound as port 0 on 127.0.0.1). Then one command per stdin line, one
reply line each (the protocol of bench/bench_intake.py ``_SINK_CHILD``, plus a few):

    count   messages received                      clear   forget them (and the counters), prints "ok"
    bytes   total bytes of message content          reads   TCP reads (data_received calls) since start/clear
    dump    JSON list, one {"sha256", "size", "from", "to"} per kept message (needs --keep; [] otherwise)
    quit    exit (end of stdin too)

What it speaks: greeting 220; EHLO (250 with SIZE, 8BITMIME, PIPELINING) / HELO; MAIL FROM:<...> with
optional parameters (SIZE= checked against --max-size: 552); RCPT TO:<...> (at most 100 per message, then
452); DATA (354, content up to CRLF "." CRLF, dot-stuffing undone: a line starting with "." loses that
first dot, RFC 5321 4.5.2; 250 or, beyond --max-size, 552); RSET, NOOP (250); QUIT (221, close). Commands
out of order (MAIL before EHLO/HELO, MAIL inside a transaction, RCPT before MAIL, DATA before RCPT) get
503, a malformed argument 501, anything else 502. Verbs are case-insensitive. Pipelining: all commands
that came in one read are answered in order and the replies written with one ``transport.write``; a
command or the content may be split across reads at any byte. No AUTH, no TLS.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import sys
import threading

MAX_SIZE = 50 * 1024 * 1024     # bytes of content held for one message; beyond: 552 (and held no more)
MAX_LINE = 64 * 1024            # a command line longer than this: 500 and the connection is closed
MAX_RECIPIENTS = 100
HOSTNAME = b"leansink.localhost"

_END = b"\r\n.\r\n"

R_GREETING = b"220 " + HOSTNAME + b" ESMTP leansink ready\r\n"
R_OK = b"250 2.0.0 OK\r\n"
R_MAIL_OK = b"250 2.1.0 OK\r\n"
R_RCPT_OK = b"250 2.1.5 OK\r\n"
R_QUEUED = b"250 2.0.0 OK: queued\r\n"
R_DATA = b"354 End data with <CR><LF>.<CR><LF>\r\n"
R_BYE = b"221 2.0.0 Bye\r\n"
R_HELO = b"250 " + HOSTNAME + b"\r\n"
R_UNKNOWN = b"502 5.5.2 Error: command not recognized\r\n"
R_NEED_HELO = b"503 5.5.1 Error: send HELO/EHLO first\r\n"
R_NESTED = b"503 5.5.1 Error: nested MAIL command\r\n"
R_NEED_MAIL = b"503 5.5.1 Error: need MAIL command\r\n"
R_NEED_RCPT = b"503 5.5.1 Error: need RCPT command\r\n"
R_TOO_MANY = b"452 4.5.3 Error: too many recipients\r\n"
R_TOO_BIG = b"552 5.3.4 Error: message too big\r\n"
R_LINE_TOO_LONG = b"500 5.5.2 Error: line too long\r\n"


def _syntax(usage: bytes) -> bytes:
    return b"501 5.5.4 Syntax: " + usage + b"\r\n"


R_SYNTAX_EHLO = _syntax(b"EHLO hostname")
R_SYNTAX_HELO = _syntax(b"HELO hostname")
R_SYNTAX_MAIL = _syntax(b"MAIL FROM:<address> [parameters]")
R_SYNTAX_RCPT = _syntax(b"RCPT TO:<address>")
R_SYNTAX_NOARG = b"501 5.5.4 Error: no arguments allowed\r\n"


def _path(arg: bytes, prefix: bytes) -> tuple[bytes, list[bytes]] | None:
    """``FROM:<a@b> SIZE=1`` → (b"a@b", [b"SIZE=1"]); None when malformed. A space after the colon is
    tolerated (as most servers do)."""
    if arg[:len(prefix)].upper() != prefix:
        return None
    rest = arg[len(prefix):].lstrip()
    if rest[:1] != b"<":
        return None
    end = rest.find(b">")
    if end < 0:
        return None
    return rest[1:end], rest[end + 1:].split()


class Store:
    """What the sink received, shared by all connections (one event loop: no locking)."""

    def __init__(self, keep: bool, max_size: int, pipelining: bool) -> None:
        self.keep = keep
        self.max_size = max_size
        self.pipelining = pipelining
        self.count = 0
        self.bytes = 0
        self.reads = 0
        self.kept: list[tuple[bytes, bytes, list[bytes]]] = []   # (content, mail from, recipients)
        ext = [HOSTNAME, b"SIZE %d" % max_size, b"8BITMIME"] + ([b"PIPELINING"] if pipelining else [])
        self.ehlo_reply = b"".join(b"250-" + e + b"\r\n" for e in ext[:-1]) + b"250 " + ext[-1] + b"\r\n"

    def clear(self) -> None:
        self.count = self.bytes = self.reads = 0
        self.kept = []

    def dump(self) -> str:
        return json.dumps([{"sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw),
                            "from": sender.decode("utf-8", "surrogateescape"),
                            "to": [r.decode("utf-8", "surrogateescape") for r in rcpts]}
                           for raw, sender, rcpts in self.kept])


class SmtpProtocol(asyncio.Protocol):
    """One SMTP connection. ``buf`` holds what has come in and not been dealt with yet (a partial command
    line, or the content of a message up to now)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.greeted = False
        self.mail_from: bytes | None = None
        self.rcpts: list[bytes] = []
        self.in_data = False
        self.data_fresh = False     # in DATA and nothing of the content consumed: a first line "." ends it
        self.scan = 0               # where in buf the search for the end of the content goes on from
        self.too_big = False        # the content went beyond max_size: dropped, 552 at its end
        self.closing = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(R_GREETING)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        store = self.store
        store.reads += 1
        if self.closing:
            return
        if self.buf:
            self.buf += data
            buf: bytes | bytearray = self.buf
        else:
            buf = data                  # nothing waiting: work on the read itself, keep only what is left
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        while pos < n:
            if self.in_data:
                if self.data_fresh:
                    head = buf[pos:pos + 3]
                    if head == b".\r\n":            # the lone dot as the first line: an empty message
                        self._message(buf, pos, pos, out)
                        pos += 3
                        continue
                    if b".\r\n".startswith(head):   # could still be that: wait for more
                        break
                    self.data_fresh = False
                end = buf.find(_END, self.scan if self.scan > pos else pos)
                if end < 0:
                    if self.too_big or n - pos > store.max_size:  # drop it, keep what could begin the end
                        self.too_big = True
                        if n - 4 > pos:
                            pos = n - 4
                    self.scan = n - 4 if n - 4 > pos else pos
                    break
                self._message(buf, pos, end + 2, out)
                pos = end + 5
                continue
            eol = buf.find(b"\n", pos)
            if eol < 0:
                if n - pos > MAX_LINE:
                    out.append(R_LINE_TOO_LONG)
                    self.closing = True
                break
            line = buf[pos:eol - 1] if eol > pos and buf[eol - 1] == 13 else buf[pos:eol]
            pos = eol + 1
            self._command(bytes(line), out)
            if self.in_data:
                self.scan = pos
            if self.closing:
                break
        # keep what is left (rebased: scan is relative to the start of buf)
        if self.closing:
            self.buf = bytearray()
        elif buf is self.buf:
            if pos:
                del self.buf[:pos]
        elif pos < n:
            self.buf = bytearray(buf[pos:])
        self.scan -= pos
        if self.scan < 0:
            self.scan = 0
        transport = self.transport
        if transport is None:
            return
        if out:
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self.closing:
            transport.close()

    # -- SMTP
    def _reset(self) -> None:
        self.mail_from = None
        self.rcpts = []

    def _message(self, buf: bytes | bytearray, start: int, stop: int, out: list[bytes]) -> None:
        """The content buf[start:stop] (ending with CRLF, or empty) has come to its end: count or keep it."""
        self.in_data = self.data_fresh = False
        store = self.store
        if self.too_big or stop - start > store.max_size:
            self.too_big = False
            out.append(R_TOO_BIG)
        else:
            size = stop - start
            stuffed = buf.count(b"\r\n.", start, stop) + (1 if stop > start and buf[start] == 46 else 0)  # "."
            if stuffed:
                size -= stuffed
            store.count += 1
            store.bytes += size
            if store.keep:
                raw = bytes(buf[start:stop])
                if stuffed:
                    if raw[:1] == b".":
                        raw = raw[1:]
                    raw = raw.replace(b"\r\n.", b"\r\n")
                store.kept.append((raw, self.mail_from or b"", self.rcpts))
            out.append(R_QUEUED)
        self._reset()

    def _command(self, line: bytes, out: list[bytes]) -> None:
        sp = line.find(b" ")
        if sp < 0:
            verb, arg = line.upper(), b""
        else:
            verb, arg = line[:sp].upper(), line[sp + 1:].strip()
        if verb == b"MAIL":
            if not self.greeted:
                out.append(R_NEED_HELO)
            elif self.mail_from is not None:
                out.append(R_NESTED)
            else:
                parsed = _path(arg, b"FROM:")
                if parsed is None:
                    out.append(R_SYNTAX_MAIL)
                    return
                address, params = parsed
                for p in params:
                    if p[:5].upper() == b"SIZE=":
                        if not p[5:].isdigit():
                            out.append(R_SYNTAX_MAIL)
                            return
                        if int(p[5:]) > self.store.max_size:
                            out.append(R_TOO_BIG)
                            return
                self.mail_from = address
                self.rcpts = []
                out.append(R_MAIL_OK)
        elif verb == b"RCPT":
            if self.mail_from is None:
                out.append(R_NEED_MAIL)
                return
            parsed = _path(arg, b"TO:")
            if parsed is None:
                out.append(R_SYNTAX_RCPT)
            elif len(self.rcpts) >= MAX_RECIPIENTS:
                out.append(R_TOO_MANY)
            else:
                self.rcpts.append(parsed[0])
                out.append(R_RCPT_OK)
        elif verb == b"DATA":
            if arg:
                out.append(R_SYNTAX_NOARG)
            elif self.mail_from is None:
                out.append(R_NEED_MAIL)
            elif not self.rcpts:
                out.append(R_NEED_RCPT)
            else:
                self.in_data = self.data_fresh = True
                out.append(R_DATA)
        elif verb == b"EHLO" or verb == b"HELO":
            if not arg:
                out.append(R_SYNTAX_EHLO if verb == b"EHLO" else R_SYNTAX_HELO)
                return
            self.greeted = True
            self._reset()
            out.append(self.store.ehlo_reply if verb == b"EHLO" else R_HELO)
        elif verb == b"RSET":
            if arg:
                out.append(R_SYNTAX_NOARG)
            else:
                self._reset()
                out.append(R_OK)
        elif verb == b"NOOP":
            out.append(R_OK)
        elif verb == b"QUIT":
            out.append(R_BYE)
            self.closing = True
        else:
            out.append(R_UNKNOWN)


# ------------------------------------------------------------------------------------------ process
def _say(text: str) -> None:
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        pass


def _answer(store: Store, cmd: str) -> bool:
    """Answer one stdin command; False to quit."""
    if cmd == "count":
        _say(str(store.count))
    elif cmd == "clear":
        store.clear()
        _say("ok")
    elif cmd == "bytes":
        _say(str(store.bytes))
    elif cmd == "reads":
        _say(str(store.reads))
    elif cmd == "dump":
        _say(store.dump())
    elif cmd == "quit":
        return False
    elif cmd:
        _say(f"error: unknown command {cmd!r}")
    return True


async def serve(store: Store, host: str = "127.0.0.1") -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    server = await loop.create_server(lambda: SmtpProtocol(store), sock=sock, backlog=128)
    _say(str(sock.getsockname()[1]))

    done = loop.create_future()

    def finish() -> None:
        if not done.done():
            done.set_result(None)

    def on_line(cmd: str) -> None:
        if not done.done() and not _answer(store, cmd):
            finish()

    pending = bytearray()
    fd = sys.stdin.fileno()

    def on_stdin() -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            finish()
            return
        pending.extend(chunk)
        while (nl := pending.find(b"\n")) >= 0:
            cmd = pending[:nl].decode("utf-8", "replace").strip()
            del pending[:nl + 1]
            on_line(cmd)

    def read_lines() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(on_line, line.strip())
            loop.call_soon_threadsafe(finish)
        except RuntimeError:            # the loop is gone: quit came first
            pass

    try:
        loop.add_reader(fd, on_stdin)   # a pipe, as the bench and the tests give it
        reader = True
    except (OSError, ValueError):       # e.g. a regular file or /dev/null, which epoll refuses: a thread
        reader = False
        threading.Thread(target=read_lines, daemon=True).start()
    try:
        await done
    finally:
        if reader:
            loop.remove_reader(fd)
        server.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep each message's content (for `dump`)")
    ap.add_argument("--no-pipelining", action="store_true", help="do not advertise PIPELINING")
    ap.add_argument("--max-size", type=int, default=MAX_SIZE, help="largest message accepted (bytes)")
    args = ap.parse_args(argv)
    store = Store(keep=args.keep, max_size=args.max_size, pipelining=not args.no_pipelining)
    asyncio.run(serve(store))


if __name__ == "__main__":
    main()
