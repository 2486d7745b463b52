"""Leases: the worker's lock expires by the database's clock (``locks.expires_at``), and an outbox row being
sent names the worker that claimed it (``outbox.claimed_by``).

Revision ID: 0004
Revises: 0003

A lock row left by a worker of an older version has no ``expires_at``: it counts as expired, so the first
worker of this version takes it (stop the old worker before upgrading, as for every upgrade). Rows already
in the outbox name no worker.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("locks", sa.Column("expires_at", sa.String(40), nullable=True))
    op.add_column("outbox", sa.Column("claimed_by", sa.String(120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("claimed_by")
    with op.batch_alter_table("locks") as batch:
        batch.drop_column("expires_at")
