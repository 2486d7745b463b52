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

from pipeline.ledger.schema import from_iso
from pipeline.ledger.store import Store

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
    """Desk sessions: create, look up (sliding expiry), delete; their rows are kept by the ledger."""

    def __init__(self, store: Store, minutes: int, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.minutes = minutes
        self.clock = clock

    def create(self, username: str) -> tuple[str, DeskSession]:
        now = self.clock()
        token = secrets.token_urlsafe(32)
        row = DeskSession(token_hash(token), username, secrets.token_urlsafe(32), now,
                          now + timedelta(minutes=self.minutes))
        self.store.create_desk_session(row.token_hash, username, row.csrf, now, row.expires_at)
        return token, row

    def lookup(self, token: str | None) -> tuple[DeskSession | None, bool]:
        """(session, expired): the live session for a cookie value, moving its expiry ahead;
        (None, True) when the cookie named a session that has run out (now deleted)."""
        if not token or len(token) > 200:
            return None, False
        th = token_hash(token)
        now = self.clock()
        expires = now + timedelta(minutes=self.minutes)
        row, expired = self.store.renew_desk_session(th, now, expires)
        if row is None:
            return None, expired
        return DeskSession(th, row.username, row.csrf, from_iso(row.created_at), expires), False

    def delete(self, token: str | None) -> None:
        if not token:
            return
        self.store.delete_desk_session(token_hash(token))


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
