"""Desk log-in sessions: one row per session, keyed by the SHA-256 of its cookie value.

What a session is (tokens, sliding expiry, CSRF) is decided in pipeline.desk.auth; here are only
its rows, each change in one transaction.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pipeline.ledger.db import Database
from pipeline.ledger.schema import desk_sessions, from_iso, iso


class DeskSessionsMixin(Database):
    def create_desk_session(self, token_hash: str, username: str, csrf: str, now: datetime,
                            expires_at: datetime) -> None:
        with self.tx() as c:
            # old sessions of anyone that ran out are cleared now and then: here, at each log-in
            c.execute(desk_sessions.delete().where(desk_sessions.c.expires_at < iso(now)))
            c.execute(desk_sessions.insert().values(
                token_hash=token_hash, username=username, csrf=csrf, created_at=iso(now),
                last_seen_at=iso(now), expires_at=iso(expires_at)))

    def renew_desk_session(self, token_hash: str, now: datetime,
                           expires_at: datetime) -> tuple[sa.Row[Any] | None, bool]:
        """(row, expired): a live session's row, its expiry moved to ``expires_at``; (None, True) when
        the session had run out (its row is deleted now); (None, False) when there is none."""
        with self.tx() as c:
            row = c.execute(sa.select(desk_sessions).where(desk_sessions.c.token_hash == token_hash)).first()
            if row is None:
                return None, False
            if from_iso(row.expires_at) <= now:
                c.execute(desk_sessions.delete().where(desk_sessions.c.token_hash == token_hash))
                return None, True
            c.execute(desk_sessions.update().where(desk_sessions.c.token_hash == token_hash)
                      .values(last_seen_at=iso(now), expires_at=iso(expires_at)))
        return row, False

    def delete_desk_session(self, token_hash: str) -> None:
        with self.tx() as c:
            c.execute(desk_sessions.delete().where(desk_sessions.c.token_hash == token_hash))
