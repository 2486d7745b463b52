"""Campaigns: every message, document, outbox row and reminder belongs to a campaign (a year).

Revision ID: 0002
Revises: 0001

Rows already there are attached to a campaign: a document to the year its period names ("2022-Q1" →
2022), anything else to the campaign year the upgrade is given (``config.attributes["campaign_year"]``:
the configured ``year``, the collection that was in progress). Reminder stages become once per unit,
obligation AND campaign, since obligation ids recur every year. Batch operations, so that SQLite (which
cannot alter a constraint) copies the table; other backends alter it in place.
"""
from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_PERIOD_YEAR = re.compile(r"^(\d{4})-")  # "2022-Q1", "2022-H1", "2022-Y"


def upgrade() -> None:
    year = context.config.attributes.get("campaign_year")
    if not isinstance(year, int):
        raise ValueError("revision 0002 needs config.attributes['campaign_year'] (the configured year)")
    for table in ("messages", "documents", "outbox", "reminders"):
        op.add_column(table, sa.Column("campaign", sa.Integer, nullable=True))
    op.add_column("entries", sa.Column("extra", sa.Text, nullable=True))
    op.create_index("ix_documents_campaign", "documents", ["campaign", "unit_id"])

    conn = op.get_bind()
    for table in ("messages", "outbox", "reminders"):
        conn.execute(sa.text(f"UPDATE {table} SET campaign = :year"), {"year": year})
    campaigns = [{"doc": doc_id, "campaign": int(m.group(1)) if (m := _PERIOD_YEAR.match(period or "")) else year}
                 for doc_id, period in conn.execute(sa.text("SELECT id, period FROM documents"))]
    if campaigns:
        conn.execute(sa.text("UPDATE documents SET campaign = :campaign WHERE id = :doc"), campaigns)

    with op.batch_alter_table("reminders") as batch:
        batch.alter_column("campaign", existing_type=sa.Integer, nullable=False)
        batch.drop_constraint("uq_reminder_stage", type_="unique")
        batch.create_unique_constraint("uq_reminder_campaign_stage", ["campaign", "unit_id", "obligation_id", "stage"])


def downgrade() -> None:
    # Fails where a unit was reminded of the same stage in two campaigns: the old constraint cannot hold both.
    with op.batch_alter_table("reminders") as batch:
        batch.drop_constraint("uq_reminder_campaign_stage", type_="unique")
        batch.create_unique_constraint("uq_reminder_stage", ["unit_id", "obligation_id", "stage"])
        batch.drop_column("campaign")
    op.drop_index("ix_documents_campaign", table_name="documents")
    with op.batch_alter_table("entries") as batch:
        batch.drop_column("extra")
    for table in ("outbox", "documents", "messages"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("campaign")
