"""The shape of config.yaml as pydantic models: types, defaults, ranges, choices and the safety rules.

The models mirror the file (sections ``mailbox``, ``smtp``, ``storage``, ``worker``, ``desk``); config.py
turns a validated :class:`ConfigFile` into the frozen objects the pipeline reads. Validation context:
``base`` is the config file's folder (relative paths are resolved against it); ``setup=True`` (the
OAuth setup command, before the refresh token exists) skips the checks on the refresh token's source.
"""
from __future__ import annotations

import os
from datetime import date, datetime
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo,
                      field_validator, model_validator)

from pipeline.schema import Problem, Text, as_text, int_in
from pipeline.settings_checks import (ADDRESS, ENV_NAME, GOOGLE_TOKEN_URI, PROJECT_ROOT, addr_of, is_loopback,
                                      secret_file_problem, zone_name)

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Port = int_in(1, 65535)
_HASH = re.compile(r"^(scrypt|pbkdf2):[^$\s]+\$[^$\s]+\$[0-9a-f]+$")
_SECRET_KEYS = ("password", "client_secret", "refresh_token", "access_token")


def _resolve(value: object, info: ValidationInfo) -> Path:
    p = value if isinstance(value, Path) else Path(os.path.expanduser(as_text(value)))
    base = (info.context or {}).get("base", Path.cwd())
    return p if p.is_absolute() else base / p


def _env_name(value: str) -> str:
    if not ENV_NAME.fullmatch(value):
        raise ValueError(f"phải là tên biến môi trường, đang là {value!r}")
    return value


def _str_list(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("phải là danh sách chuỗi / must be a list of strings")
    return tuple(v.strip() for v in value)


def _number(lo: float, hi: float, problem: str) -> Any:
    """A number (int or decimal, not a boolean) in lo..hi; ``problem`` is the message, ``{!r}`` the value."""
    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ValueError(problem.format(value))
        return float(value)
    return Annotated[float, BeforeValidator(check)]


FilePath = Annotated[Path, BeforeValidator(_resolve)]
"""A path resolved against the config file's folder (``~`` expanded)."""
EnvName = Annotated[Text, AfterValidator(_env_name)]
StrList = Annotated[tuple[str, ...], BeforeValidator(_str_list)]


def _present(value: object) -> object:
    # A section written with no keys (`worker:`) reads as an empty mapping, as its defaults.
    return {} if value is None else value


class Section(BaseModel):
    """A mapping with a fixed set of keys; a secret written into the file is refused by name."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for key in data:
            if key in _SECRET_KEYS:
                env, what = ("password_env", ("mật khẩu", "password")) if key == "password" else \
                    (f"{key}_env", ("bí mật", "secret"))
                raise Problem(key, f"không ghi {what[0]} vào config; đặt nó trong biến môi trường mà {env} nêu "
                                   f"tên / never put a {what[1]} in config, use {env}")
        allowed = sorted(cls.model_fields)
        for key in data:
            if key not in cls.model_fields:
                raise Problem(str(key), f"khoá không được hỗ trợ / unknown key (cho phép: {', '.join(allowed)})")
        for name, field in cls.model_fields.items():
            if name not in data and field.is_required() and isinstance(field.annotation, type) \
                    and issubclass(field.annotation, BaseModel):
                raise Problem(name, "thiếu; phải là một nhóm khoá (mapping) / missing, must be a mapping")
        return data


class OAuthSection(Section):
    client_id: Text
    client_secret_env: EnvName
    refresh_token_env: EnvName | None = None
    refresh_token_file: FilePath | None = None
    token_uri: Text = GOOGLE_TOKEN_URI

    @field_validator("token_uri")
    @classmethod
    def _token_uri(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"phải là địa chỉ https://…, đang là {value!r}")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ValueError(f"http (không mã hoá) chỉ được phép với máy loopback, còn {parts.hostname!r} thì "
                             "không; dùng https / plain http is only allowed for a loopback host")
        return value

    @model_validator(mode="after")
    def _one_token_source(self, info: ValidationInfo) -> OAuthSection:
        if (info.context or {}).get("setup"):
            return self  # the token is being fetched: its file need not exist yet
        if (self.refresh_token_env is None) == (self.refresh_token_file is None):
            raise Problem("refresh_token_env", "cần đúng một trong refresh_token_env hoặc refresh_token_file "
                                               "/ exactly one of refresh_token_env, refresh_token_file")
        if self.refresh_token_file is not None:
            problem = secret_file_problem(self.refresh_token_file)
            if problem:
                raise Problem("refresh_token_file", problem)
        return self


class ServerSection(Section):
    """What IMAP and SMTP share; ``port`` defaults by ``security``."""

    DEFAULT_PORTS: ClassVar[dict[str, int]] = {}
    host: Text
    security: Annotated[Literal["ssl", "starttls", "plain"], BeforeValidator(as_text)] = "ssl"
    port: Port | None = None
    username: Text | None = None
    password_env: EnvName | None = None
    timeout: _number(1e-9, 600, "phải là số giây trong khoảng (0, 600], đang là {!r}") = 60.0
    ca_file: FilePath | None = None
    auth: Annotated[Literal["password", "xoauth2"], BeforeValidator(as_text)] = "password"
    oauth: OAuthSection | None = None

    @field_validator("ca_file")
    @classmethod
    def _ca_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"không tìm thấy tệp {value}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _oauth_only_with_xoauth2(cls, data: Any) -> Any:
        # Checked before the block itself: its contents do not matter while auth is not xoauth2.
        if isinstance(data, dict) and "oauth" in data and str(data.get("auth", "")).strip() != "xoauth2":
            raise Problem("oauth", "chỉ dùng khi auth: xoauth2 / only with auth: xoauth2")
        return data

    @model_validator(mode="after")
    def _rules(self) -> ServerSection:
        if self.port is None:
            self.port = self.DEFAULT_PORTS[self.security]
        if self.security == "plain" and not is_loopback(self.host):
            raise Problem("security", f"'plain' (không mã hoá) chỉ được phép với máy chủ loopback, còn {self.host!r} "
                                      "thì không; dùng ssl hoặc starttls / plain is only allowed for a loopback host")
        if self.auth == "xoauth2":
            if not self.username:
                raise Problem("username", "auth: xoauth2 cần username (địa chỉ Gmail) / xoauth2 needs the username")
            if self.password_env:
                raise Problem("password_env", "auth: xoauth2 không dùng mật khẩu; bỏ password_env "
                                              "/ password_env and auth: xoauth2 exclude each other")
            if self.oauth is None:
                raise Problem("oauth", "auth: xoauth2 cần nhóm khoá oauth / xoauth2 needs an oauth mapping")
        return self


def _day(value: Any) -> Any:
    # YAML reads 2022-01-26 as a date already; the office writes 26/01/2022.
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d{1,2})/(\d{1,2})/(\d{4})\s*", value)
        try:
            if m:
                return date(int(m[3]), int(m[2]), int(m[1]))
            return date.fromisoformat(value.strip())
        except ValueError as exc:
            raise ValueError(f"ngày không hợp lệ: {value!r} (viết DD/MM/YYYY) / not a date") from exc
    if isinstance(value, datetime):
        return value.date()
    return value


class MailboxSection(ServerSection):
    DEFAULT_PORTS: ClassVar[dict[str, int]] = {"ssl": 993, "starttls": 143, "plain": 143}
    folder: Text = "INBOX"
    batch_size: int_in(1, 1000) = 50
    processed_keyword: Text | None = None
    processed_folder: Text | None = None
    trusted_authserv_ids: StrList = ()
    # First contact: only mail received since this day is asked for, answered and counted
    # (default: the day the current campaign opened).
    since: Annotated[date | None, BeforeValidator(_day)] = None

    @field_validator("processed_keyword")
    @classmethod
    def _keyword(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\$?[A-Za-z0-9_.-]+", value):
            raise ValueError(f"từ khoá IMAP không hợp lệ: {value!r} (chỉ chữ, số, _ . -)")
        return value


class SmtpSection(ServerSection):
    DEFAULT_PORTS: ClassVar[dict[str, int]] = {"ssl": 465, "starttls": 587, "plain": 25}
    sender: Text
    per_minute: int_in(1, 10000) = 20
    # Gmail lets an account send about 500 mails a rolling day, Google Workspace 2,000: the default keeps a
    # margin under whichever the account is (a @gmail.com sender on smtp.gmail.com, or another domain there).
    per_day: int_in(1, 100000) | None = None
    # Of each day, this many are kept for receipts (and staff alerts): reminders and reports wait for tomorrow
    # rather than use them. Default: a quarter of per_day (bench/deadline_rush.py: a district of 300 units
    # sent at most 95 receipts on its busiest day).
    reserve_for_receipts: int_in(0, 100000) | None = None
    # Where the account keeps a copy of each mail its SMTP server sent (Gmail: "[Gmail]/Sent Mail"): after a
    # crash mid-send the worker looks there for the mail's Message-ID. "auto": the folder the IMAP server
    # marks as Sent (the default when mailbox and smtp are the same Gmail account); a folder name; or none.
    sent_folder: Text | None = None
    # Without a sent folder, a send cut off by a crash is: "staff" (left for a person: `intake outbox retry`)
    # or "resend" (sent again with the same Message-ID after a minute: a rare second copy over a missing one).
    unsettled: Literal["staff", "resend"] = "staff"

    @model_validator(mode="after")
    def _daily_defaults(self) -> SmtpSection:
        if self.per_day is None:
            workspace = (self.host or "").lower() == "smtp.gmail.com" and not addr_of(self.sender).lower().endswith(
                ("@gmail.com", "@googlemail.com"))
            object.__setattr__(self, "per_day", 1800 if workspace else 400)
        if self.sent_folder is not None and self.sent_folder.strip().lower() in ("none", "no", ""):
            object.__setattr__(self, "sent_folder", "")  # said: none (the default is decided in config.py)
        if self.reserve_for_receipts is None:
            object.__setattr__(self, "reserve_for_receipts", self.per_day // 4)
        elif self.reserve_for_receipts >= self.per_day:
            raise ValueError(f"reserve_for_receipts ({self.reserve_for_receipts}) phải nhỏ hơn per_day "
                             f"({self.per_day}): nếu không, thư nhắc không bao giờ được gửi")
        return self

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        if not ADDRESS.match(addr_of(value)):
            raise ValueError(f"không phải địa chỉ email hợp lệ: {value!r}")
        return value


class StorageSection(Section):
    database: Text   # a file path (SQLite) or a URL: postgresql://user@host/db (driver psycopg), any SQLAlchemy URL
    archive: FilePath
    pool_size: int_in(1, 100) = 5
    max_overflow: int_in(0, 100) = 2
    pool_timeout: _number(1, 600, "phải là số giây trong khoảng 1..600, đang là {!r}") = 30.0
    connect_timeout: int_in(1, 600) = 10
    # PostgreSQL: one statement longer than this is cancelled (0: no limit)
    statement_timeout: _number(0, 3600, "phải là số giây trong khoảng 0..3600, đang là {!r}") = 60.0

    def database_url(self, base: Path) -> str:
        if "://" in self.database:
            return self.database
        p = Path(os.path.expanduser(self.database))
        return f"sqlite:///{p if p.is_absolute() else base / p}"


class WorkerSection(Section):
    poll_minutes: int_in(1, 1440) = 5
    reminder_hour: int_in(0, 23) = 8
    remind_cc_staff: bool = False
    digest_weekday: Annotated[Weekday, BeforeValidator(as_text)] = "mon"
    alert_after_minutes: int_in(1, 7 * 24 * 60) = 60
    receipt_delay_alert_minutes: int_in(1, 7 * 24 * 60) = 15
    quiet_alert_days: int_in(0, 60) = 3
    quiet_days_before_deadline: int_in(0, 60) = 7
    idle: bool = True
    # RFC 2177: a server may end IDLE after 30 minutes (Gmail does, after about 29)
    idle_renew_minutes: _number(0.05, 29, "phải là số phút trong khoảng 0.05..29, đang là {!r}") = 10.0


class DeskAccountSection(Section):
    username: Text
    name: Text | None = None
    password_hash: Text

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", value):
            raise ValueError(f"chỉ dùng chữ không dấu, số và _ . @ -, đang là {value!r}")
        return value

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        if not _HASH.match(value):
            raise ValueError("phải là chuỗi băm do `intake desk hash-password` tạo ra, không phải mật khẩu")
        return value


class DeskSection(Section):
    enabled: bool = False
    host: Text = "127.0.0.1"
    port: Port = 8765
    session_minutes: int_in(5, 7 * 24 * 60) = 480
    accounts: Annotated[list[DeskAccountSection], BeforeValidator(lambda v: [] if v is None else v)] = []

    @field_validator("accounts")
    @classmethod
    def _unique(cls, accounts: list[DeskAccountSection]) -> list[DeskAccountSection]:
        seen: set[str] = set()
        for i, account in enumerate(accounts):
            if account.username.lower() in seen:
                raise Problem(f"[{i}].username", f"tài khoản {account.username!r} bị khai báo hai lần")
            seen.add(account.username.lower())
        return accounts


class ConfigFile(Section):
    organisation: Text
    # Districts side by side on one PostgreSQL database: each its own schema, named by this short id
    district: Text = "intake"
    year: int_in(2000, 2100)
    timezone: Text = "Asia/Ho_Chi_Minh"
    phone: Text | None = None
    place: Text | None = None
    mailbox: MailboxSection
    smtp: SmtpSection
    storage: StorageSection
    units: FilePath = Field("units.csv", validate_default=True)
    staff: StrList = ()
    rules: FilePath = PROJECT_ROOT / "rules"
    templates: FilePath = PROJECT_ROOT / "templates"
    keep_first_attempt_date: bool = False
    worker: Annotated[WorkerSection, BeforeValidator(_present)] = WorkerSection()
    desk: Annotated[DeskSection, BeforeValidator(_present)] = DeskSection()

    @field_validator("district")
    @classmethod
    def _district(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", value):
            raise ValueError(f"mã quận/huyện phải bắt đầu bằng chữ thường không dấu, rồi chữ thường, số hoặc _ "
                             f"(tối đa 41 ký tự), đang là {value!r}; mỗi quận dùng chung một cơ sở dữ liệu "
                             "PostgreSQL phải có mã riêng / a district id is [a-z][a-z0-9_]{0,40}")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return zone_name(value)

    @field_validator("units")
    @classmethod
    def _units_exist(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError(f"không tìm thấy tệp danh sách đơn vị {value}")
        return value

    @field_validator("staff")
    @classmethod
    def _addresses(cls, staff: tuple[str, ...]) -> tuple[str, ...]:
        for i, addr in enumerate(staff):
            if not ADDRESS.match(addr):
                raise Problem(f"[{i}]", f"không phải địa chỉ email hợp lệ: {addr!r}")
        return staff
