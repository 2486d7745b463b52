"""Staff log-in for the desk: server-side sessions, CSRF tokens, a brake on password guessing.

The session cookie holds a random token (``secrets.token_urlsafe``); the database keeps only its
SHA-256 (``desk_sessions.token_hash``), with the session's CSRF token and its expiry. The expiry
slides: every request made with a valid session moves it ``session_minutes`` ahead; an expired
session is deleted the first time it is presented. Log-out deletes the row.

CSRF: every form carries the session's token and every POST is refused (403) without it. The
log-in form has no session yet, so it uses a double-submit token: a random value set in its own
SameSite=Strict cookie and repeated in the form. Cookies are HttpOnly and SameSite=Strict, and
Secure when the desk is reached over HTTPS.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

import sqlalchemy as sa

from pipeline.ledger.store import Store, desk_sessions, from_iso, iso

SESSION_COOKIE = "intake_desk"
LOGIN_COOKIE = "intake_desk_login"
CSRF_FIELD = "csrf_token"
_dummy_hash: str | None = None


def dummy_hash() -> str:
    """A real hash of a random password, checked when the user name is unknown so that both cases
    take as long (made once per process)."""
    global _dummy_hash
    if _dummy_hash is None:
        from werkzeug.security import generate_password_hash

        _dummy_hash = generate_password_hash(secrets.token_urlsafe(16))
    return _dummy_hash


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two tokens; a missing one never matches."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


@dataclass(frozen=True)
class DeskSession:
    token_hash: str
    username: str
    csrf: str
    created_at: datetime
    expires_at: datetime


class Sessions:
    """desk_sessions rows: create, look up (sliding expiry), delete."""

    def __init__(self, store: Store, minutes: int, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.minutes = minutes
        self.clock = clock

    def create(self, username: str) -> tuple[str, DeskSession]:
        now = self.clock()
        token = secrets.token_urlsafe(32)
        row = DeskSession(token_hash(token), username, secrets.token_urlsafe(32), now,
                          now + timedelta(minutes=self.minutes))
        with self.store.tx() as c:
            # old sessions of anyone that ran out are cleared now and then: here, at each log-in
            c.execute(desk_sessions.delete().where(desk_sessions.c.expires_at < iso(now)))
            c.execute(desk_sessions.insert().values(
                token_hash=row.token_hash, username=username, csrf=row.csrf, created_at=iso(now),
                last_seen_at=iso(now), expires_at=iso(row.expires_at)))
        return token, row

    def lookup(self, token: str | None) -> tuple[DeskSession | None, bool]:
        """(session, expired): the live session for a cookie value, moving its expiry ahead;
        (None, True) when the cookie named a session that has run out (now deleted)."""
        if not token or len(token) > 200:
            return None, False
        th = token_hash(token)
        now = self.clock()
        with self.store.tx() as c:
            row = c.execute(sa.select(desk_sessions).where(desk_sessions.c.token_hash == th)).first()
            if row is None:
                return None, False
            if from_iso(row.expires_at) <= now:
                c.execute(desk_sessions.delete().where(desk_sessions.c.token_hash == th))
                return None, True
            expires = now + timedelta(minutes=self.minutes)
            c.execute(desk_sessions.update().where(desk_sessions.c.token_hash == th)
                      .values(last_seen_at=iso(now), expires_at=iso(expires)))
        return DeskSession(th, row.username, row.csrf, from_iso(row.created_at), expires), False

    def delete(self, token: str | None) -> None:
        if not token:
            return
        with self.store.tx() as c:
            c.execute(desk_sessions.delete().where(desk_sessions.c.token_hash == token_hash(token)))


class LoginThrottle:
    """Failed log-ins per user name and per client address: each failure costs a short delay, and
    after ``limit`` failures within ``window`` seconds further attempts are refused for ``lockout``
    seconds after the last failure (a correct password included)."""

    def __init__(self, *, limit: int = 5, window: float = 900.0, lockout: float = 60.0, delay: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.lockout, self.delay = limit, window, lockout, delay
        self.clock = clock
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, []) if now - t < self.window]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def wait_seconds(self, keys: tuple[str, ...]) -> int:
        """0 when an attempt may be made now, else the seconds still to wait."""
        now = self.clock()
        with self._lock:
            worst = 0.0
            for key in keys:
                times = self._recent(key, now)
                if len(times) >= self.limit:
                    worst = max(worst, times[-1] + self.lockout - now)
            return int(worst + 0.999) if worst > 0 else 0

    def failed(self, keys: tuple[str, ...]) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                self._recent(key, now)
                self._failures.setdefault(key, []).append(now)
        if self.delay:
            time.sleep(self.delay)

    def succeeded(self, keys: tuple[str, ...]) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


class Flashes:
    """One-shot messages shown on the next page of a session (kept in memory, per session)."""

    def __init__(self) -> None:
        self._items: dict[str, list[tuple[str, str]]] = {}
        self._lock = threading.Lock()

    def add(self, session_hash: str, category: str, text: str) -> None:
        with self._lock:
            items = self._items.setdefault(session_hash, [])
            items.append((category, text))
            del items[:-20]

    def take(self, session_hash: str) -> list[tuple[str, str]]:
        with self._lock:
            return self._items.pop(session_hash, [])

    def drop(self, session_hash: str) -> None:
        with self._lock:
            self._items.pop(session_hash, None)
