"""One exception tree for the whole pipeline.

    IntakeError                      base; never escapes the CLI as a traceback
    ├── ConfigError                  config.yaml, units file or rules/*.yaml is invalid (names file and key)
    ├── SchemaOutdated               the database's schema is not this version's: `intake db upgrade` it
    ├── TemporaryError               worth retrying on the next pass
    │   ├── MailboxUnavailable       IMAP connect/login/network failure or timeout
    │   │   └── MailboxAccessRefused   (also AccessRefused) Gmail refused the login: wrong app password,
    │   │                              IMAP disabled, refresh token revoked
    │   ├── SmtpUnavailable          SMTP connect/network failure or 4xx reply
    │   │   └── SmtpAccessRefused      (also AccessRefused) the SMTP login was refused
    │   ├── OAuthUnavailable         the OAuth token endpoint cannot be reached, times out or answers 5xx
    │   └── StoreBusy                database locked / unavailable
    └── PermanentError               retrying will not help
        ├── AccessRefused            a person must act (new app password, enable IMAP, new refresh token)
        │   └── OAuthRefused           the token endpoint refused the refresh token or the client
        ├── MessageParseError        the raw message cannot be parsed at all
        ├── SmtpRejected             SMTP 5xx for a recipient or the message
        └── AnotherWorkerRunning     a second worker on the same database

A refused login is both: permanent for the person reading it (retrying with the same secret will not
help, so the message says what to do), yet a pass treats it like an unreachable server -- recorded,
shown by ``status``, alerted on by the worker, the outbox kept for later -- and it is tried again
once the secret changes (see mailbox.py).
"""
from __future__ import annotations


class IntakeError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class ConfigError(IntakeError):
    """Raised at start when configuration is invalid; the message names the file and dotted key."""


class SchemaOutdated(IntakeError):
    """Raised on opening a database made by another version (older: `intake db upgrade`; or newer); like
    ConfigError it is found at start and a person must act, so the CLI prints it plainly (exit code 2)."""


class TemporaryError(IntakeError):
    """Raised for failures that a later pass may not meet again."""


class MailboxUnavailable(TemporaryError):
    """Raised by mailbox.py for IMAP connect, login, protocol or socket failures."""


class SmtpUnavailable(TemporaryError):
    """Raised by outbox/smtp.py when the SMTP server cannot be reached or answers 4xx."""


class OAuthUnavailable(TemporaryError):
    """Raised by oauth.py when the token endpoint cannot be reached, times out or answers 5xx/429."""


class StoreBusy(TemporaryError):
    """Raised by the ledger when the database is locked or unreachable."""


class PermanentError(IntakeError):
    """Raised for failures that retrying will not cure."""


class AccessRefused(PermanentError):
    """A server refused our credentials or access; the message says what a person has to do."""


class OAuthRefused(AccessRefused):
    """Raised by oauth.py when the token endpoint refuses the refresh token or the OAuth client."""


class MailboxAccessRefused(MailboxUnavailable, AccessRefused):
    """Raised by mailbox.py when the IMAP login is refused (wrong app password, IMAP disabled, ...)."""


class SmtpAccessRefused(SmtpUnavailable, AccessRefused):
    """Raised by outbox/smtp.py when the SMTP login is refused; outbox items wait rather than fail."""


class MessageParseError(PermanentError):
    """Raised by mime.py when a message cannot be parsed at all."""


class SmtpRejected(PermanentError):
    """Raised by outbox/smtp.py when the SMTP server refuses a message permanently (5xx)."""


class AnotherWorkerRunning(PermanentError):
    """Raised when a second worker starts against a database that already has one."""
