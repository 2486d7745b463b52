"""The ledger's tables: columns, constraints, indexes, and how times are stored.

Times are stored as UTC ISO-8601 strings so that they sort and compare the same way on every
backend. Text columns are CleanString/CleanText (cleantext.py): what PostgreSQL would refuse is cleaned on
the way in, with the same DDL as String/Text. The dedup keys (Message-ID + content hash, Gmail's X-GM-MSGID, outbox keys, reminder
stages) are unique constraints: a replay after a crash finds what was already done.

A change here needs a revision in migrations/versions/ that makes the same change to an existing
database (tests/test_migrations.py compares the two); see migrate.py.
"""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from pipeline.ledger.cleantext import CleanString, CleanText  # text made storable on every backend

metadata = sa.MetaData()

poll_state = sa.Table(
    "poll_state", metadata,
    sa.Column("folder", CleanString(255), primary_key=True),
    sa.Column("uidvalidity", sa.BigInteger, nullable=False),
    sa.Column("last_uid", sa.BigInteger, nullable=False),
    sa.Column("updated_at", CleanString(40), nullable=False),
)

messages = sa.Table(
    "messages", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("message_id", CleanString(998), nullable=False, default=""),
    sa.Column("sha256", CleanString(64), nullable=False),
    sa.Column("gm_msgid", sa.BigInteger, nullable=True, unique=True),
    sa.Column("folder", CleanString(255), nullable=False),
    sa.Column("uidvalidity", sa.BigInteger, nullable=False),
    sa.Column("uid", sa.BigInteger, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("received_at", CleanString(40), nullable=False),
    sa.Column("sender", CleanString(320)),
    sa.Column("from_name", CleanText),
    sa.Column("subject", CleanText),
    sa.Column("unit_id", CleanString(64)),
    sa.Column("state", CleanString(20), nullable=False),
    sa.Column("reason", CleanText),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("generation", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", CleanString(40), nullable=False),
    sa.Column("updated_at", CleanString(40), nullable=False),
    # set by staff on the desk: process this mail as if it came from that unit / despite a failed auth check
    sa.Column("assigned_unit_id", CleanString(64), nullable=True),
    sa.Column("released", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    # the campaign (year) open when the mail arrived; None: before any campaign (not answered)
    sa.Column("campaign", sa.Integer, nullable=True),
    # a resent copy (same Message-ID, sender and files, re-composed): the message it repeats; recorded, never answered
    sa.Column("duplicate_of", sa.Integer, nullable=True),
    sa.UniqueConstraint("message_id", "sha256", name="uq_message_identity"),
)

documents = sa.Table(
    "documents", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("message_pk", sa.Integer, sa.ForeignKey("messages.id"), nullable=False, index=True),
    sa.Column("unit_id", CleanString(64), index=True),
    sa.Column("part", CleanString(64), nullable=False),
    sa.Column("filename", CleanText, nullable=False),
    sa.Column("content_type", CleanString(255)),
    sa.Column("sha256", CleanString(64), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("kind", CleanString(20), nullable=False),
    sa.Column("period", CleanString(16)),
    sa.Column("state", CleanString(20), nullable=False),
    sa.Column("format", CleanString(16)),
    sa.Column("title", CleanText),
    sa.Column("unit_line", CleanText),
    sa.Column("on_time", sa.Boolean, nullable=True),
    sa.Column("received_at", CleanString(40), nullable=False),
    sa.Column("superseded_by", sa.Integer, nullable=True),
    sa.Column("reviewed_by", CleanString(120), nullable=True),
    # the campaign (year) the document counts for: the year it names, else the one open when it arrived
    sa.Column("campaign", sa.Integer, nullable=True),
)

entries = sa.Table(
    "entries", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("document_id", sa.Integer, sa.ForeignKey("documents.id"), nullable=False, index=True),
    sa.Column("section", CleanString(20), nullable=False),
    sa.Column("name", CleanText, nullable=False),
    sa.Column("model", CleanText, nullable=False),
    sa.Column("categories", CleanText, nullable=False),  # JSON list
    sa.Column("result", CleanText),
    sa.Column("note", CleanText),
    sa.Column("row", sa.Integer),
    sa.Column("location", CleanString(120)),
    sa.Column("extra", CleanText, nullable=True),  # JSON object: the form's other columns, key → text
)

findings = sa.Table(
    "findings", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("document_id", sa.Integer, sa.ForeignKey("documents.id"), nullable=False, index=True),
    sa.Column("code", CleanString(64), nullable=False),
    sa.Column("severity", CleanString(10), nullable=False),
    sa.Column("message", CleanText, nullable=False),
    sa.Column("location", CleanString(120)),
    sa.Column("row", sa.Integer),
    sa.Column("column", CleanString(120)),
)

outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", CleanString(255), nullable=False, unique=True),
    sa.Column("purpose", CleanString(20), nullable=False),  # receipt | reminder | report | alert
    sa.Column("message_pk", sa.Integer, nullable=True),
    sa.Column("unit_id", CleanString(64), nullable=True),
    sa.Column("recipients", CleanText, nullable=False),  # JSON list
    sa.Column("subject", CleanText, nullable=False),
    sa.Column("smtp_message_id", CleanString(255), nullable=False),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("state", CleanString(20), nullable=False),  # pending | sending | sent | failed | uncertain | dropped
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", CleanText),
    sa.Column("created_at", CleanString(40), nullable=False),
    sa.Column("next_attempt_at", CleanString(40), nullable=False),
    sa.Column("sent_at", CleanString(40)),
    sa.Column("campaign", sa.Integer, nullable=True),  # the campaign a receipt or reminder is about
    sa.Column("claimed_by", CleanString(120), nullable=True),  # the worker (lease holder id) sending it
)

reminders = sa.Table(
    "reminders", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("unit_id", CleanString(64), nullable=False),
    sa.Column("obligation_id", CleanString(64), nullable=False),
    sa.Column("stage", CleanString(32), nullable=False),
    sa.Column("outbox_id", sa.Integer, nullable=True),  # None: stage passed over by a later one
    sa.Column("created_at", CleanString(40), nullable=False),
    # obligation ids recur every year ("registration"): a stage is once per unit, obligation AND campaign
    sa.Column("campaign", sa.Integer, nullable=False),
    sa.UniqueConstraint("campaign", "unit_id", "obligation_id", "stage", name="uq_reminder_campaign_stage"),
)

bounces = sa.Table(
    "bounces", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("message_pk", sa.Integer, nullable=False, unique=True),
    sa.Column("outbox_id", sa.Integer, nullable=True),
    sa.Column("unit_id", CleanString(64), nullable=True),
    sa.Column("recipients", CleanText, nullable=False),
    sa.Column("created_at", CleanString(40), nullable=False),
)

review_actions = sa.Table(
    "review_actions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("action", CleanString(20), nullable=False),  # assign | release | accept | reject | ignore
    sa.Column("target", CleanString(20), nullable=False),  # message | document | bounce
    sa.Column("target_id", sa.Integer, nullable=False),
    sa.Column("params", CleanText, nullable=False),  # JSON: what staff chose
    sa.Column("before", CleanText, nullable=False),  # JSON: what it was, so that undo restores it
    sa.Column("actor", CleanString(120), nullable=False),
    sa.Column("created_at", CleanString(40), nullable=False),
    sa.Column("undone_by", CleanString(120), nullable=True),
    sa.Column("undone_at", CleanString(40), nullable=True),
)

desk_sessions = sa.Table(
    "desk_sessions", metadata,
    sa.Column("token_hash", CleanString(64), primary_key=True),  # sha256 of the cookie value
    sa.Column("username", CleanString(120), nullable=False),
    sa.Column("csrf", CleanString(64), nullable=False),
    sa.Column("created_at", CleanString(40), nullable=False),
    sa.Column("last_seen_at", CleanString(40), nullable=False),
    sa.Column("expires_at", CleanString(40), nullable=False),
)

locks = sa.Table(
    "locks", metadata,
    sa.Column("name", CleanString(64), primary_key=True),
    sa.Column("holder", CleanString(120), nullable=False),  # unique per process start: host:pid:random
    sa.Column("host", CleanString(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("acquired_at", CleanString(40), nullable=False),
    sa.Column("heartbeat_at", CleanString(40), nullable=False),
    sa.Column("expires_at", CleanString(40), nullable=True),  # by the database's clock (leases.py)
)

kv = sa.Table(
    "kv", metadata,
    sa.Column("key", CleanString(120), primary_key=True),
    sa.Column("value", CleanText, nullable=False),
    sa.Column("updated_at", CleanString(40), nullable=False),
)


# Hot queries of every pass must not scan tables that grow with the mailbox (or read outbox.raw).
sa.Index("ix_messages_state", messages.c.state)
sa.Index("ix_outbox_state_due", outbox.c.state, outbox.c.next_attempt_at)
sa.Index("ix_outbox_state_sent", outbox.c.state, outbox.c.sent_at)
sa.Index("ix_review_target", review_actions.c.target, review_actions.c.target_id)
sa.Index("ix_documents_group", documents.c.unit_id, documents.c.kind, documents.c.period, documents.c.state)
sa.Index("ix_documents_campaign", documents.c.campaign, documents.c.unit_id)


def iso(dt: datetime) -> str:
    """UTC ISO string of an aware datetime."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime")
    return dt.astimezone(timezone.utc).isoformat(timespec="seconds")


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)

