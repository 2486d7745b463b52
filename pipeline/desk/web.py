"""What the desk's route modules share: the one blueprint, the desk's state on the app, request helpers.

Every route module (pipeline.desk.security and pipeline.desk.pages.*) attaches its views to the same
blueprint ``bp``, so every endpoint stays ``desk.<view>`` as the templates' ``url_for`` and the
navigation expect; pipeline.desk.app imports those modules and registers ``bp`` once per app.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, request, url_for

from pipeline.desk.auth import DeskSession, Flashes, LoginThrottle, Sessions

MAX_UPLOAD = 2 * 1024 * 1024
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

bp = Blueprint("desk", __name__)


@dataclass
class Desk:
    ctx: Any
    clock: Callable[[], datetime]
    sessions: Sessions
    throttle: LoginThrottle
    flashes: Flashes

    def now(self) -> datetime:
        return self.clock()

    def today(self) -> date:
        return self.now().astimezone(self.ctx.cfg.tz).date()


def desk() -> Desk:
    return current_app.extensions["intake_desk"]  # type: ignore[no-any-return]


def flash(category: str, text: str) -> None:
    sess: DeskSession | None = g.get("session")
    if sess is not None:
        desk().flashes.add(sess.token_hash, category, text)


def safe_next(target: str | None) -> str:
    if not target:
        return url_for("desk.overview")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("desk.overview")
    return target


def cookie_secure() -> bool:
    return request.is_secure
