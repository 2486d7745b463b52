"""Resent copies: a message recorded as a copy of an earlier one names it (``messages.duplicate_of``).

Revision ID: 0003
Revises: 0002

Mail recorded before this revision keeps its state: copies already answered are not re-marked (their receipts
went out); a copy arriving after the upgrade is recognised against any earlier mail, whenever recorded.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("duplicate_of", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("duplicate_of")
