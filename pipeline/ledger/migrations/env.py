"""Alembic's environment for the ledger: the migrations run on the connection and in the transaction that
pipeline.ledger.migrate opens (``config.attributes["connection"]``); there is no alembic.ini."""
from __future__ import annotations

from alembic import context

from pipeline.ledger.schema import metadata

context.configure(connection=context.config.attributes["connection"], target_metadata=metadata,
                  render_as_batch=True)  # SQLite alters a table by copying it: autogenerate must write batches
with context.begin_transaction():  # joins the caller's transaction: the whole upgrade commits or none of it
    context.run_migrations()
