"""Reads config.yaml once into frozen objects.

Every error names the file and the dotted key (the rules themselves are pydantic models in
settings_file.py). Secrets never live in the file: ``password_env`` names an environment variable,
read here and only here; with ``auth: xoauth2`` the ``oauth`` block names the client secret's variable
and the refresh token's variable or file (mode 600, outside the repo). Relative paths are resolved
against the directory of the config file, so ``intake --config /etc/intake/config.yaml`` works from
any directory.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.errors import ConfigError
from pipeline.ledger.backend import StorageOptions, district_url
from pipeline.schema import read_mapping, validate
from pipeline.settings_checks import GOOGLE_TOKEN_URI, addr_of, env_secret, secret_file_problem
from pipeline.settings_file import ConfigFile, MailboxSection, OAuthSection, ServerSection, SmtpSection


@dataclass(frozen=True)
class OAuthConfig:
    """OAuth 2 (XOAUTH2) for Gmail: the client id is in the file; secrets only in the environment or a 600 file."""

    client_id: str
    client_secret_env: str
    refresh_token_env: str | None = None
    refresh_token_file: Path | None = None
    token_uri: str = GOOGLE_TOKEN_URI

    def client_secret(self) -> str:
        return env_secret(self.client_secret_env, "client secret của ứng dụng OAuth")

    def refresh_token(self) -> str:
        if self.refresh_token_env:
            return env_secret(self.refresh_token_env, "refresh token OAuth")
        assert self.refresh_token_file is not None
        problem = secret_file_problem(self.refresh_token_file)
        if problem:
            raise ConfigError(f"refresh token OAuth: {problem}")
        value = self.refresh_token_file.read_text(encoding="utf-8").strip()
        if not value:
            raise ConfigError(f"refresh token OAuth: tệp {self.refresh_token_file} rỗng")
        return value

    def secret_source(self) -> str:
        """Where the refresh token lives, for messages (never the token itself)."""
        if self.refresh_token_env:
            return f"biến môi trường {self.refresh_token_env}"
        return f"tệp {self.refresh_token_file}"


@dataclass(frozen=True)
class ServerConfig:
    host: str
    port: int
    security: str
    username: str | None
    password_env: str | None
    timeout: float
    ca_file: Path | None  # extra CA bundle to trust (e.g. a private server); system CAs otherwise
    auth: str = "password"           # password (an app password from password_env) | xoauth2
    oauth: OAuthConfig | None = None  # set when auth is xoauth2

    def password(self) -> str | None:
        """The password from the environment; None when no password_env is configured."""
        if not self.password_env:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise ConfigError(
                f"biến môi trường {self.password_env} chưa được đặt (mật khẩu cho {self.username}@{self.host}); "
                f"environment variable {self.password_env} is not set"
            )
        return value


@dataclass(frozen=True)
class MailboxConfig(ServerConfig):
    folder: str = "INBOX"
    batch_size: int = 50
    processed_keyword: str | None = None
    processed_folder: str | None = None
    trusted_authserv_ids: tuple[str, ...] = ()
    since: date | None = None  # first contact: mail received before this day is not asked for nor counted


@dataclass(frozen=True)
class SmtpConfig(ServerConfig):
    sender: str = ""
    per_minute: int = 20
    per_day: int = 400
    reserve_for_receipts: int = 100  # of per_day, kept for receipts and alerts (send.py)
    sent_folder: str | None = None   # "auto" (IMAP \\Sent), a folder, or None: where interrupted sends are settled
    unsettled: str = "staff"         # no sent folder: "staff" or "resend" after the grace period

    @property
    def receipt_reserve(self) -> int:
        return min(self.reserve_for_receipts, max(self.per_day - 1, 0))


@dataclass(frozen=True)
class DeskAccount:
    username: str
    name: str
    password_hash: str  # made by `intake desk hash-password`; the password itself is never stored


@dataclass(frozen=True)
class DeskConfig:
    enabled: bool = False          # also serve the desk inside `intake run`
    host: str = "127.0.0.1"
    port: int = 8765
    session_minutes: int = 480     # a session expires this long after its last use
    accounts: tuple[DeskAccount, ...] = ()

    def account(self, username: str) -> DeskAccount | None:
        key = username.strip().lower()
        return next((a for a in self.accounts if a.username.lower() == key), None)


@dataclass(frozen=True)
class Config:
    path: Path
    organisation: str
    year: int
    timezone: str
    tz: ZoneInfo
    mailbox: MailboxConfig
    smtp: SmtpConfig
    database_url: str  # on PostgreSQL: with the district's schema and the timeouts (ledger/backend.py)
    archive_dir: Path
    units_file: Path
    staff: tuple[str, ...]
    rules_dir: Path
    templates_dir: Path
    keep_first_attempt_date: bool
    poll_minutes: int
    reminder_hour: int
    remind_cc_staff: bool
    digest_weekday: str = "mon"
    alert_after_minutes: int = 60
    receipt_delay_alert_minutes: int = 15  # receipts expected to wait longer → one alert to staff
    quiet_alert_days: int = 3
    quiet_days_before_deadline: int = 7
    idle: bool = True                 # `intake run` waits on IMAP IDLE where the server offers it
    idle_renew_minutes: float = 10.0  # end and re-enter IDLE this often (servers drop it after ~29 minutes)
    desk: DeskConfig = DeskConfig()
    phone: str | None = None          # the office's telephone, in the signature of every mail to units
    place: str = ""                   # the date line's place: "Long Biên, ngày 05 tháng 02 năm 2022"
    district: str = "intake"          # its schema when districts share one PostgreSQL database
    storage: StorageOptions = StorageOptions()  # the connection pool and timeouts

    @functools.cached_property
    def own_addresses(self) -> tuple[str, ...]:
        """Addresses whose mail is the district's own outgoing mail (read for every mail: computed once)."""
        addrs = {a for a in (self.mailbox.username, addr_of(self.smtp.sender), self.smtp.username) if a and "@" in a}
        return tuple(sorted(a.lower() for a in addrs))


_PLACE = re.compile(r"\b(?:quận|huyện|thị xã|thành phố|tỉnh)\s+(.+)$", re.IGNORECASE)


def place_of(organisation: str) -> str:
    """The district in the organisation's name ("Liên đoàn Lao động quận Long Biên" → "Long Biên"), else ""."""
    m = _PLACE.search(organisation.strip())
    return m.group(1).strip() if m else ""


def load_config(path: str | Path) -> Config:
    """Read and validate config.yaml; raise ConfigError naming file and key on any bad value."""
    path = Path(path).resolve()
    f = validate(ConfigFile, read_mapping(path), path, context={"base": path.parent})
    w = f.worker
    s = f.storage
    storage = StorageOptions(pool_size=s.pool_size, max_overflow=s.max_overflow, pool_timeout=s.pool_timeout,
                             connect_timeout=s.connect_timeout, statement_timeout=s.statement_timeout)
    return Config(
        path=path,
        organisation=f.organisation,
        phone=f.phone,
        place=f.place if f.place is not None else place_of(f.organisation),
        year=f.year,
        timezone=f.timezone,
        tz=ZoneInfo(f.timezone),
        mailbox=MailboxConfig(**_server(f.mailbox)),
        smtp=SmtpConfig(**{**_server(f.smtp), "sent_folder": _sent_folder(f)}),
        database_url=district_url(f.storage.database_url(path.parent), f.district, storage),
        district=f.district,
        storage=storage,
        archive_dir=f.storage.archive,
        units_file=f.units,
        staff=f.staff,
        rules_dir=f.rules,
        templates_dir=f.templates,
        keep_first_attempt_date=f.keep_first_attempt_date,
        poll_minutes=w.poll_minutes,
        reminder_hour=w.reminder_hour,
        remind_cc_staff=w.remind_cc_staff,
        digest_weekday=w.digest_weekday,
        alert_after_minutes=w.alert_after_minutes,
        receipt_delay_alert_minutes=w.receipt_delay_alert_minutes,
        quiet_alert_days=w.quiet_alert_days,
        quiet_days_before_deadline=w.quiet_days_before_deadline,
        idle=w.idle,
        idle_renew_minutes=w.idle_renew_minutes,
        desk=DeskConfig(
            enabled=f.desk.enabled, host=f.desk.host, port=f.desk.port, session_minutes=f.desk.session_minutes,
            accounts=tuple(DeskAccount(username=a.username, name=a.name or a.username, password_hash=a.password_hash)
                           for a in f.desk.accounts),
        ),
    )


def _sent_folder(f: Any) -> str | None:
    """``smtp.sent_folder`` as said, else "auto" where the IMAP mailbox is the Gmail account that sends (Gmail
    files what its SMTP sends in that account's "[Gmail]/Sent Mail"); else none."""
    said = f.smtp.sent_folder
    if said is not None:
        return said or None
    same = (f.smtp.username or "").strip().lower() == (f.mailbox.username or "").strip().lower() != ""
    gmail = (f.smtp.host or "").lower() == "smtp.gmail.com" and (f.mailbox.host or "").lower() == "imap.gmail.com"
    return "auto" if same and gmail else None


def _server(section: ServerSection) -> dict[str, object]:
    fields = dict(section)  # shallow: the values as validated, oauth still a model
    fields["oauth"] = _oauth(section.oauth) if section.oauth else None
    return fields


def _oauth(o: OAuthSection) -> OAuthConfig:
    return OAuthConfig(client_id=o.client_id, client_secret_env=o.client_secret_env,
                       refresh_token_env=o.refresh_token_env, refresh_token_file=o.refresh_token_file,
                       token_uri=o.token_uri)


def oauth_setup(path: str | Path, section: str) -> MailboxConfig | SmtpConfig:
    """The ``mailbox`` or ``smtp`` section for ``python -m pipeline.oauth``, before its refresh token exists.

    Only that section is checked, and its refresh token source is not (the file is what the command writes).
    """
    path = Path(path).resolve()
    data = read_mapping(path)
    model, cls = {"mailbox": (MailboxSection, MailboxConfig), "smtp": (SmtpSection, SmtpConfig)}[section]
    s = validate(model, data.get(section), path, f"{section}.", context={"base": path.parent, "setup": True})
    if s.oauth is None:
        raise ConfigError(f"{path}: {section}.auth: cần auth: xoauth2 và nhóm khoá oauth (xem README) "
                          "/ set auth: xoauth2 and an oauth mapping first")
    return cls(**_server(s))
