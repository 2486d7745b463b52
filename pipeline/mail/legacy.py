"""Attachments as old mail clients pack them: uuencoded files (Outlook Express and Eudora put them in
the body text, some webmail in x-uuencode parts) and the files inside Outlook's winmail.dat (TNEF).
The email package reads neither. Pure functions over bytes; damaged input gives what can be read.
"""
from __future__ import annotations

import binascii
import re

__all__ = ["UU_BEGIN", "uudecode", "uu_files", "tnef_files"]

UU_BEGIN = re.compile(rb"^begin[ \t]+[0-7]{3,4}[ \t]+([^\r\n]+?)[ \t]*\r?$", re.MULTILINE)


def uudecode(block: bytes) -> bytes:
    """The bytes of uuencoded lines (without the begin/end lines); bad lines are skipped."""
    out = bytearray()
    for line in block.splitlines():
        line = line.rstrip(b"\r")
        if not line or line in (b"`", b" "):
            continue
        try:
            out += binascii.a2b_uu(line)
        except binascii.Error:
            # Some encoders drop trailing spaces: pad to the declared length and retry.
            try:
                nbytes = (((line[0] - 32) & 63) * 4 + 5) // 3
                out += binascii.a2b_uu(line[:nbytes].ljust(nbytes))
            except (binascii.Error, IndexError):
                continue
    return bytes(out)


def uu_files(data: bytes) -> list[tuple[str, bytes]]:
    """(name, bytes) of every ``begin … end`` block in ``data``; a missing ``end`` runs to the end."""
    files: list[tuple[str, bytes]] = []
    for m in UU_BEGIN.finditer(data):
        rest = data[m.end():]
        end = re.search(rb"^end[ \t]*\r?$", rest, re.MULTILINE)
        body = rest[: end.start()] if end else rest
        files.append((m.group(1).decode("utf-8", errors="replace").strip(), uudecode(body)))
    return files


_TNEF_SIGNATURE = b"\x78\x9f\x3e\x22"
_TNEF_ATTACH_REND = 0x00069002  # starts a new attachment
_TNEF_ATTACH_TITLE = 0x00018010  # its (short) file name
_TNEF_ATTACH_DATA = 0x0006800F


def tnef_files(data: bytes) -> list[tuple[str, bytes]]:
    """The files inside a winmail.dat (Outlook's TNEF): title and data attributes only.

    The long file name lives in MAPI properties that this reader does not decode; the short
    title is usually the same name for Latin names."""
    if not data.startswith(_TNEF_SIGNATURE):
        return []
    files: list[list[object]] = []
    pos = 6
    while pos + 9 <= len(data):
        level = data[pos]
        attr = int.from_bytes(data[pos + 1 : pos + 5], "little")
        length = int.from_bytes(data[pos + 5 : pos + 9], "little")
        value = data[pos + 9 : pos + 9 + length]
        pos += 9 + length + 2
        if level != 2 or len(value) != length:
            continue
        if attr == _TNEF_ATTACH_REND or not files:
            files.append(["", b""])
        if attr == _TNEF_ATTACH_TITLE:
            files[-1][0] = value.split(b"\x00", 1)[0].decode("cp1252", errors="replace")
        elif attr == _TNEF_ATTACH_DATA:
            files[-1][1] = value
    return [(str(name), bytes(body)) for name, body in files if body]  # type: ignore[call-overload]
