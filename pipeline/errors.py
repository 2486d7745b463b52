"""One exception tree for the whole pipeline.

    IntakeError                      base; never escapes the CLI as a traceback
    ├── ConfigError                  config.yaml, units file or rules/*.yaml is invalid (names file and key)
    ├── TemporaryError               worth retrying on the next pass
    │   ├── MailboxUnavailable       IMAP connect/login/network failure or timeout
    │   ├── SmtpUnavailable          SMTP connect/network failure or 4xx reply
    │   └── StoreBusy                database locked / unavailable
    └── PermanentError               retrying will not help
        ├── MessageParseError        the raw message cannot be parsed at all
        ├── SmtpRejected             SMTP 5xx for a recipient or the message
        └── AnotherWorkerRunning     a second worker on the same database
"""
from __future__ import annotations


class IntakeError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class ConfigError(IntakeError):
    """Raised at start when configuration is invalid; the message names the file and dotted key."""


class TemporaryError(IntakeError):
    """Raised for failures that a later pass may not meet again."""


class MailboxUnavailable(TemporaryError):
    """Raised by mailbox.py for IMAP connect, login, protocol or socket failures."""


class SmtpUnavailable(TemporaryError):
    """Raised by notify.py when the SMTP server cannot be reached or answers 4xx."""


class StoreBusy(TemporaryError):
    """Raised by store.py when the database is locked or unreachable."""


class PermanentError(IntakeError):
    """Raised for failures that retrying will not cure."""


class MessageParseError(PermanentError):
    """Raised by mime.py when a message cannot be parsed at all."""


class SmtpRejected(PermanentError):
    """Raised by notify.py when the SMTP server refuses a message permanently (5xx)."""


class AnotherWorkerRunning(PermanentError):
    """Raised when a second worker starts against a database that already has one."""
