"""What the IMAP session (mailbox.py) and the SMTP transport (outbox/smtp.py) share to log in.

A verifying TLS context, and an OAuth access token for ``auth: xoauth2`` whose failures come out as
the calling service's own errors. What Gmail answers to a login is in refusals.py.
"""
from __future__ import annotations

import ssl

from pipeline import oauth
from pipeline.config import ServerConfig
from pipeline.errors import OAuthRefused, OAuthUnavailable


def tls_context(cafile: str | None = None) -> ssl.SSLContext:
    """A verifying TLS context: system CAs plus an optional extra bundle; hostnames checked."""
    ctx = ssl.create_default_context()
    if cafile:
        ctx.load_verify_locations(cafile=cafile)
    return ctx


def oauth_access_token(cfg: ServerConfig, service: str, refused: type[Exception],
                       unavailable: type[Exception]) -> str:
    """An OAuth access token for cfg (XOAUTH2), its failures as the caller's own errors."""
    assert cfg.oauth is not None and cfg.username
    try:
        return oauth.access_token(cfg.oauth, user=cfg.username, ca_file=cfg.ca_file, timeout=cfg.timeout)
    except OAuthRefused as exc:
        raise refused(f"{service} {cfg.username}@{cfg.host}: {exc}") from exc
    except OAuthUnavailable as exc:
        raise unavailable(f"{service} {cfg.username}@{cfg.host}: {exc}") from exc
