"""Composing mail: the templates, the message builder and the outbox items it makes.

Mail is built completely (with its own Message-ID) when it is enqueued, in the same transaction as the
outcome it reports; sending (send.py) only replays those bytes. ``email.message.EmailMessage`` does the
encoding, with a header factory that folds Vietnamese subjects, display names and long message ids as
mail readers expect them.
"""
from __future__ import annotations

import email.policy
from email import headerregistry
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, localtime, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Iterable, Sequence

import jinja2

from pipeline.ledger.outbox import OutboxItem
from pipeline.plan.vn import vn_date_long


def template_env(templates_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["ddmmyyyy"] = lambda d: d.strftime("%d/%m/%Y") if d else ""
    env.filters["ddmmyyyy_hhmm"] = lambda d: d.strftime("%H:%M ngày %d/%m/%Y") if d else ""
    env.filters["date_long"] = vn_date_long
    # The office's details in every signature and date line; Context sets them from config.yaml.
    env.globals.update(office_phone=None, office_place="")
    return env


def _encoded_words(name: str, text: str, policy: email.policy.Policy) -> str:
    """``text`` as RFC 2047 encoded words by ``email.header.Header``, which keeps every space inside a word."""
    return Header(text, "utf-8", header_name=name).encode(linesep=policy.linesep,
                                                           maxlinelen=policy.max_line_length or 78)


# Python 3.11's folder (policy.default and policy.SMTP) sometimes writes the space between two words of a
# long non-ASCII Subject or display name as whitespace between two encoded words, which readers drop
# (RFC 2047 6.2): "phổ thôngNguyễn", in about one Vietnamese receipt subject in ten (CPython gh-144156; 3.11
# does not get the fix). These two headers are folded by email.header.Header instead when they are not ASCII.

class _Subject(headerregistry.UniqueUnstructuredHeader):
    def fold(self, *, policy: email.policy.Policy) -> str:
        text = str(self)
        if text.isascii():
            return super().fold(policy=policy)
        return f"{self.name}: {_encoded_words(self.name, text, policy)}{policy.linesep}"


class _From(headerregistry.UniqueAddressHeader):
    def fold(self, *, policy: email.policy.Policy) -> str:
        if len(self.addresses) != 1 or self.addresses[0].display_name.isascii():
            return super().fold(policy=policy)
        mailbox = self.addresses[0]
        folded = f"{self.name}: {_encoded_words(self.name, mailbox.display_name, policy)}"
        address = f" <{mailbox.addr_spec}>"
        if len(folded.rsplit(policy.linesep, 1)[-1] + address) > (policy.max_line_length or 78):
            folded += policy.linesep  # the address goes on a line of its own
        return f"{folded}{address}{policy.linesep}"


class _MessageIds(headerregistry.UnstructuredHeader):
    """In-Reply-To and References: the message ids as they are, folded between ids only.

    The email package makes an encoded word of a token longer than a line, and Outlook's message ids are
    about 90 characters: no reader would take that for an id, and the receipt would leave the unit's thread.
    """

    def fold(self, *, policy: email.policy.Policy) -> str:
        width = policy.max_line_length or 78
        ids = str(self).split()
        lines = [f"{self.name}: {ids[0]}"] if ids else [f"{self.name}:"]
        for mid in ids[1:]:
            if len(lines[-1]) + 1 + len(mid) > width:
                lines.append("")  # a folded line starts with the space before its id
            lines[-1] += " " + mid
        return policy.linesep.join(lines) + policy.linesep


def _header_factory() -> headerregistry.HeaderRegistry:
    registry = headerregistry.HeaderRegistry()
    registry.map_to_type("subject", _Subject)
    registry.map_to_type("from", _From)
    registry.map_to_type("in-reply-to", _MessageIds)
    registry.map_to_type("references", _MessageIds)
    return registry


# Headers are made (and later folded) by the policy the message is built with; the bytes are written with
# policy.SMTP's CRLF line ends.
_POLICY = email.policy.default.clone(header_factory=_header_factory())


def build_mail(*, sender: str, to: Sequence[str], subject: str, text: str, html: str | None = None,
               cc: Sequence[str] = (), in_reply_to: str | None = None, references: Sequence[str] = (),
               attachments: Iterable[tuple[str, bytes, str]] = (), auto_submitted: bool = True) -> tuple[str, bytes]:
    """Build a complete message with CRLF line ends; return (Message-ID, bytes).

    ``email.message.EmailMessage`` does the encoding: RFC 2047 encoded words for non-ASCII header text,
    RFC 2231 for non-ASCII file names, text and HTML as ``multipart/alternative``, attachments after them.
    """
    name, addr = parseaddr(sender)
    domain = addr.rsplit("@", 1)[-1] if "@" in addr else "intake.local"
    mid = make_msgid(idstring="intake", domain=domain)
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = formataddr((name, addr)) if name else addr
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    msg["Message-ID"] = mid
    msg["Date"] = format_datetime(localtime())
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        # RFC 5322 3.6.4: the parent's References followed by the parent itself.
        refs = [r for r in references if r] + ([in_reply_to] if in_reply_to not in references else [])
        msg["References"] = " ".join(refs)
    if auto_submitted:
        # RFC 3834: machine-made replies say so, so that units' autoresponders do not answer them.
        msg["Auto-Submitted"] = "auto-replied" if in_reply_to else "auto-generated"
    msg.set_content(text, charset="utf-8")
    if html:
        msg.add_alternative(html, subtype="html", charset="utf-8")
    for filename, data, mime in attachments:
        maintype, _, subtype = mime.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream", filename=filename)
    # SMTP wants CRLF line ends, and smtplib does not convert the line ends of bytes it is given.
    return mid, msg.as_bytes(policy=email.policy.SMTP)


def receipt_item(env: jinja2.Environment, view: dict[str, Any], *, sender: str, to: Sequence[str],
                 key: str, message_pk: int, unit_id: str | None, in_reply_to: str | None,
                 references: Sequence[str], subject: str,
                 attachments: Sequence[tuple[str, bytes, str]] = (), campaign: int | None = None) -> OutboxItem:
    text = env.get_template("receipt.txt.j2").render(**view)
    html = env.get_template("receipt.html.j2").render(**view)
    base = subject.strip() or "(không có tiêu đề)"
    subj = base if base.lower().startswith(("re:", "trả lời:")) else f"Re: {base}"
    mid, raw = build_mail(sender=sender, to=to, subject=subj, text=text, html=html,
                          in_reply_to=in_reply_to, references=references, attachments=attachments)
    return OutboxItem(key=key, purpose="receipt", recipients=tuple(to), subject=subj, smtp_message_id=mid,
                      raw=raw, message_pk=message_pk, unit_id=unit_id, campaign=campaign)
