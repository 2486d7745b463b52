"""A fast path for ``email``'s FeedParser: the same ``Message`` tree for well-formed mail, found with
string searches instead of a Python loop over every line.

FeedParser walks a message line by line: every line of a base64 attachment goes through a
Python-level ``readline`` and a boundary check, and every multipart compiles a regular expression
for its boundary. For a mail with a small workbook attached that is most of the time spent on it.
Here each part's header block is read line by line exactly as FeedParser reads it, but bodies are
taken as slices and multipart boundaries are found with ``str.find``.

The result must be the very tree FeedParser builds (headers as ``(name, value)`` pairs made by the
policy's ``header_source_parse``, payloads, preambles, epilogues with FeedParser's newline rules,
defects, default types). Whenever a message strays from the plain shape (a header line FeedParser
would flag, a Unix ``From`` line, a multipart without boundary or close delimiter, an empty part,
``message/delivery-status``), :func:`split` raises :class:`Unusual` and the caller parses the whole
message with FeedParser instead. ``tests/test_mimesplit.py`` compares both trees over every sample
and many mutated copies.
"""
from __future__ import annotations

import re
from email import errors
from email.message import Message
from typing import Any

__all__ = ["Unusual", "split", "header_items"]


class Unusual(Exception):
    """Not the plain shape this fast path handles: parse with FeedParser instead."""


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)?")
_EOL = re.compile(r"\r\n|\r|\n")
# A named header line, as FeedParser's headerRE accepts it (an empty name is a defect there: not here).
_NAMED = re.compile(r"[\041-\071\073-\176]+:")
# FeedParser's boundaryendRE: what may follow "--boundary" on a delimiter line.
_BOUNDARY_END = re.compile(r"(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$")
_MAX_DEPTH = 60  # deeper nesting than any client makes: leave it to FeedParser


def _strip_eol(text: str) -> str:
    """FeedParser's trim of one final newline (NLCRE_eol): CRLF, CR or LF."""
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith(("\r", "\n")):
        return text[:-1]
    return text


def _read_headers(text: str, pos: int, end: int, policy: Any, set_raw: Any) -> int:
    """Read the header block at ``pos``; each header goes to ``set_raw(name, value)``. Returns where the
    body starts (after the empty separator line), or ``end`` when there is no body."""
    lines: list[str] = []
    match_line = _LINE.match
    while pos < end:
        line = match_line(text, pos, end).group()
        first = line[0]
        if first == "\n" or first == "\r":  # the empty line between header and body
            if lines:
                set_raw(*policy.header_source_parse(lines))
            return pos + len(line)
        if first == " " or first == "\t":
            if not lines:
                raise Unusual("first header line is a continuation")
            lines.append(line)
        else:
            if line.startswith("From ") or not _NAMED.match(line):
                raise Unusual("header line FeedParser would not take as a plain header")
            if lines:
                set_raw(*policy.header_source_parse(lines))
            lines = [line]
        pos += len(line)
    if lines:
        set_raw(*policy.header_source_parse(lines))
    return end


def header_items(text: str, policy: Any) -> list[tuple[str, str]]:
    """The header block of a message as FeedParser (``headersonly``) reads it with ``policy``: a list of
    ``(name, value)``. Raises Unusual where the fast path would."""
    items: list[tuple[str, str]] = []
    _read_headers(text, 0, len(text), policy, lambda name, value: items.append((name, value)))
    return items


def _find_delimiter(text: str, sep: str, pos: int, end: int) -> tuple[int, int, bool] | None:
    """The first line in text[pos:end] that is a delimiter for ``sep`` ("--" + boundary), as FeedParser
    matches it: (start of the line, end of the line with its newline, close delimiter?)."""
    find = text.find
    k = find(sep, pos, end)
    while k >= 0:
        if k == pos or text[k - 1] in "\r\n":
            m = _EOL.search(text, k, end)
            line_end = m.end() if m else end
            mo = _BOUNDARY_END.match(text[k:line_end], len(sep))
            if mo:
                return k, line_end, bool(mo.group("end"))
        k = find(sep, k + 1, end)
    return None


def split(text: str, policy: Any, factory: type[Message] = Message) -> Message:
    """The message FeedParser(factory, policy=policy) would build from ``text`` (a str as
    BytesParser makes it: ASCII with surrogate escapes). Raises Unusual when the fast path does not apply."""
    return _part(text, 0, len(text), policy, factory, False, 0)[0]


def _part(text: str, pos: int, end: int, policy: Any, factory: type[Message], in_digest: bool,
          depth: int) -> tuple[Message, Message, str]:
    """(the message read from text[pos:end], FeedParser's ``_last`` after reading it, its main type)."""
    if depth > _MAX_DEPTH:
        raise Unusual("nested too deeply")
    msg = factory(policy=policy)
    if in_digest:
        msg.set_default_type("message/rfc822")
    body = _read_headers(text, pos, end, policy, msg.set_raw)
    ctype = msg.get_content_type()
    if ctype == "message/delivery-status":
        raise Unusual("delivery-status body")
    maintype = ctype.split("/")[0]
    if maintype == "message":
        inner, last, last_main = _part(text, body, end, policy, factory, False,
                                       depth + 1)
        msg.attach(inner)
        return msg, last, last_main
    if maintype != "multipart":
        msg.set_payload(text[body:end])
        return msg, msg, maintype

    boundary = msg.get_boundary()
    if boundary is None:
        raise Unusual("multipart without boundary")
    if str(msg.get("content-transfer-encoding", "8bit")).lower() not in ("7bit", "8bit", "binary"):
        policy.handle_defect(msg, errors.InvalidMultipartContentTransferEncodingDefect())
    digest = bool(msg) and ctype == "multipart/digest"
    sep = "--" + boundary
    found = _find_delimiter(text, sep, body, end)
    if found is None or found[2]:
        raise Unusual("no opening delimiter")
    start, after, _close = found
    if start > body:
        # RFC 2046: the newline before a delimiter belongs to it.
        msg.preamble = _strip_eol(text[body:start])
    while True:
        nxt = _find_delimiter(text, sep, after, end)
        if nxt is None:
            raise Unusual("no close delimiter")
        if nxt[0] == after:
            raise Unusual("delimiter lines back to back")
        child, last, last_main = _part(text, after, nxt[0], policy, factory, digest, depth + 1)
        msg.attach(child)
        if last_main == "multipart":
            epilogue = last.epilogue
            if epilogue == "":
                last.epilogue = None
            elif epilogue is not None:
                last.epilogue = _strip_eol(epilogue)
        else:
            payload = last._payload  # noqa: SLF001 - exactly what FeedParser trims
            if isinstance(payload, str):
                last._payload = _strip_eol(payload)  # noqa: SLF001
        start, after, close = nxt
        if close:
            msg.epilogue = text[after:end]
            return msg, msg, "multipart"
