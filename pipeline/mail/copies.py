"""What makes a mail a resent copy of another: the facts two copies share, whatever was re-stamped.

A sending server that retries (or a client that sends again from its outbox) delivers the same mail twice:
same Message-ID, same sender, same files, but the MIME is composed again (new boundaries, transfer
encodings) and the trace headers and even the Date are new, so the raw bytes (and their sha256, the ledger's
identity) differ. The key below leaves all of those out and keeps what a person would call "the same mail".

Where the mail carries files, the files are what the ledger records and what the receipt answers: the set of
their sha256s decides (with the subject), and the body is not compared (a client may re-wrap it). A mail
without files is compared by its text, so a broken client that reuses a Message-ID for a new question is not
taken for a copy. A mail without a Message-ID has no key: nothing says two of them are one.
"""
from __future__ import annotations

import email
import email.policy
import hashlib
from dataclasses import dataclass

from pipeline.mail.headers import content_type, decode_bytes, walk_parts
from pipeline.model import ParsedMail
from pipeline.textnorm import nfc


@dataclass(frozen=True)
class CopyKey:
    """Equal for a mail and its resent copies (the Message-ID is matched by the ledger's lookup)."""
    sender: str
    subject: str  # NFC, whitespace collapsed: a copy may fold or encode the header differently
    attachments: frozenset[str]  # sha256 of each attachment
    body: str | None  # sha256 of the text body, whitespace collapsed; only for a mail without attachments


def copy_key(parsed: ParsedMail, raw: bytes) -> CopyKey | None:
    """The key of a parsed mail; None when it has no Message-ID or no readable sender (never a copy)."""
    if not parsed.message_id or not parsed.from_addr:
        return None
    attachments = frozenset(a.sha256 for a in parsed.attachments)
    return CopyKey(sender=parsed.from_addr, subject=nfc(parsed.subject), attachments=attachments,
                   body=None if attachments else _body_digest(raw))


def _body_digest(raw: bytes) -> str:
    """sha256 of every text part's decoded text, whitespace collapsed (transfer encoding and line wrapping
    of a re-composed copy do not count)."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception:  # noqa: BLE001 - unreadable: the raw bytes are all there is to compare
        return hashlib.sha256(raw).hexdigest()
    texts: list[str] = []
    for part in walk_parts(msg):
        if part.is_multipart() or not content_type(part).startswith("text/"):
            continue
        try:
            data = part.get_payload(decode=True) or b""
        except Exception:  # noqa: BLE001
            data = str(part.get_payload()).encode("utf-8", errors="surrogateescape")
        texts.append(decode_bytes(data, part.get_content_charset()))
    return hashlib.sha256(nfc(" ".join(texts)).encode("utf-8")).hexdigest()
