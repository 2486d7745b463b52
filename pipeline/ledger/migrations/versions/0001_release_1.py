"""The ledger as the first release made it (before campaigns), which had no version table.

Revision ID: 0001
Revises: (none)

A database that release made is stamped 0001 by ``intake db upgrade`` and upgraded from here; this
revision creates the same tables only when a database is built by replaying every revision.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "poll_state",
        sa.Column("folder", sa.String(255), primary_key=True),
        sa.Column("uidvalidity", sa.BigInteger, nullable=False),
        sa.Column("last_uid", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message_id", sa.String(998), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("gm_msgid", sa.BigInteger, nullable=True, unique=True),
        sa.Column("folder", sa.String(255), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger, nullable=False),
        sa.Column("uid", sa.BigInteger, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("received_at", sa.String(40), nullable=False),
        sa.Column("sender", sa.String(320)),
        sa.Column("from_name", sa.Text),
        sa.Column("subject", sa.Text),
        sa.Column("unit_id", sa.String(64)),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
        sa.Column("assigned_unit_id", sa.String(64), nullable=True),
        sa.Column("released", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.UniqueConstraint("message_id", "sha256", name="uq_message_identity"),
    )
    op.create_index("ix_messages_state", "messages", ["state"])
    op.create_table(
        "documents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message_pk", sa.Integer, sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("unit_id", sa.String(64)),
        sa.Column("part", sa.String(64), nullable=False),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("content_type", sa.String(255)),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("period", sa.String(16)),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("format", sa.String(16)),
        sa.Column("title", sa.Text),
        sa.Column("unit_line", sa.Text),
        sa.Column("on_time", sa.Boolean, nullable=True),
        sa.Column("received_at", sa.String(40), nullable=False),
        sa.Column("superseded_by", sa.Integer, nullable=True),
        sa.Column("reviewed_by", sa.String(120), nullable=True),
    )
    op.create_index("ix_documents_message_pk", "documents", ["message_pk"])
    op.create_index("ix_documents_unit_id", "documents", ["unit_id"])
    op.create_index("ix_documents_group", "documents", ["unit_id", "kind", "period", "state"])
    op.create_table(
        "entries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("document_id", sa.Integer, sa.ForeignKey("documents.id"), nullable=False),
        sa.Column("section", sa.String(20), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("categories", sa.Text, nullable=False),
        sa.Column("result", sa.Text),
        sa.Column("note", sa.Text),
        sa.Column("row", sa.Integer),
        sa.Column("location", sa.String(120)),
    )
    op.create_index("ix_entries_document_id", "entries", ["document_id"])
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("document_id", sa.Integer, sa.ForeignKey("documents.id"), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("location", sa.String(120)),
        sa.Column("row", sa.Integer),
        sa.Column("column", sa.String(120)),
    )
    op.create_index("ix_findings_document_id", "findings", ["document_id"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(255), nullable=False, unique=True),
        sa.Column("purpose", sa.String(20), nullable=False),
        sa.Column("message_pk", sa.Integer, nullable=True),
        sa.Column("unit_id", sa.String(64), nullable=True),
        sa.Column("recipients", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("smtp_message_id", sa.String(255), nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("next_attempt_at", sa.String(40), nullable=False),
        sa.Column("sent_at", sa.String(40)),
    )
    op.create_index("ix_outbox_state_due", "outbox", ["state", "next_attempt_at"])
    op.create_index("ix_outbox_state_sent", "outbox", ["state", "sent_at"])
    op.create_table(
        "reminders",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("unit_id", sa.String(64), nullable=False),
        sa.Column("obligation_id", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("outbox_id", sa.Integer, nullable=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.UniqueConstraint("unit_id", "obligation_id", "stage", name="uq_reminder_stage"),
    )
    op.create_table(
        "bounces",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message_pk", sa.Integer, nullable=False, unique=True),
        sa.Column("outbox_id", sa.Integer, nullable=True),
        sa.Column("unit_id", sa.String(64), nullable=True),
        sa.Column("recipients", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "review_actions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("target", sa.String(20), nullable=False),
        sa.Column("target_id", sa.Integer, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("before", sa.Text, nullable=False),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("undone_by", sa.String(120), nullable=True),
        sa.Column("undone_at", sa.String(40), nullable=True),
    )
    op.create_index("ix_review_target", "review_actions", ["target", "target_id"])
    op.create_table(
        "desk_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("username", sa.String(120), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("last_seen_at", sa.String(40), nullable=False),
        sa.Column("expires_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "locks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(120), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("acquired_at", sa.String(40), nullable=False),
        sa.Column("heartbeat_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "kv",
        sa.Column("key", sa.String(120), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    for table in ("kv", "locks", "desk_sessions", "review_actions", "bounces", "reminders", "outbox", "findings",
                  "entries", "documents", "messages", "poll_state"):
        op.drop_table(table)  # with its indexes
