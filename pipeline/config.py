"""Reads config.yaml once into frozen objects.

Every error names the file and the dotted key. Secrets never live in the file: ``password_env`` names
an environment variable, read here and only here; with ``auth: xoauth2`` the ``oauth`` block names the
client secret's variable and the refresh token's variable or file (mode 600, outside the repo). Relative paths are resolved against the directory
of the config file, so ``intake --config /etc/intake/config.yaml`` works from any directory.
"""
from __future__ import annotations

import functools
import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from pipeline.errors import ConfigError

SECURITY = ("ssl", "starttls", "plain")
AUTH = ("password", "xoauth2")
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ADDR = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


def _env_secret(name: str, what: str) -> str:
    value = os.environ.get(name)
    if value is None or not value.strip():
        raise ConfigError(f"biến môi trường {name} chưa được đặt ({what}); environment variable {name} is not set")
    return value.strip()


def secret_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot hold a secret (missing, not a file, readable by others, inside the repo); None if fine."""
    try:
        st = path.stat()
    except OSError as exc:
        return f"không đọc được tệp {path}: {exc.strerror or exc}"
    if not path.is_file():
        return f"{path} không phải là tệp"
    root = Path(__file__).resolve().parent.parent
    if path.resolve().is_relative_to(root):
        return (f"tệp {path} nằm trong thư mục mã nguồn {root}; đặt nó ngoài repo, ví dụ "
                "/etc/intake/refresh-token / keep it outside the repository")
    if st.st_mode & 0o077:
        return (f"tệp {path} đang có quyền {st.st_mode & 0o777:o}: người khác đọc được; "
                f"chạy `chmod 600 {path}` / the file must be readable by its owner only")
    return None


@dataclass(frozen=True)
class OAuthConfig:
    """OAuth 2 (XOAUTH2) for Gmail: the client id is in the file; secrets only in the environment or a 600 file."""

    client_id: str
    client_secret_env: str
    refresh_token_env: str | None = None
    refresh_token_file: Path | None = None
    token_uri: str = GOOGLE_TOKEN_URI

    def client_secret(self) -> str:
        return _env_secret(self.client_secret_env, "client secret của ứng dụng OAuth")

    def refresh_token(self) -> str:
        if self.refresh_token_env:
            return _env_secret(self.refresh_token_env, "refresh token OAuth")
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


@dataclass(frozen=True)
class SmtpConfig(ServerConfig):
    sender: str = ""
    per_minute: int = 20
    per_day: int = 400


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
    database_url: str
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
    quiet_alert_days: int = 3
    quiet_days_before_deadline: int = 7
    idle: bool = True                 # `intake run` waits on IMAP IDLE where the server offers it
    idle_renew_minutes: float = 10.0  # end and re-enter IDLE this often (servers drop it after ~29 minutes)
    desk: DeskConfig = DeskConfig()

    @functools.cached_property
    def own_addresses(self) -> tuple[str, ...]:
        """Addresses whose mail is the district's own outgoing mail (read for every mail: computed once)."""
        addrs = {a for a in (self.mailbox.username, _addr_of(self.smtp.sender), self.smtp.username) if a and "@" in a}
        return tuple(sorted(a.lower() for a in addrs))


def _addr_of(value: str) -> str:
    from email.utils import parseaddr

    return parseaddr(value)[1].lower()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


class _Reader:
    """Typed access to a mapping that reports errors as 'file: key: problem'."""

    def __init__(self, path: Path, data: Mapping[str, Any], prefix: str = "") -> None:
        self.file, self.data, self.prefix = path, data, prefix

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.prefix}{key}: {problem}")

    def sub(self, key: str, required: bool = True) -> _Reader:
        value = self.data.get(key)
        if value is None and not required:
            return _Reader(self.file, {}, f"{self.prefix}{key}.")
        if not isinstance(value, Mapping):
            raise self.fail(key, "phải là một nhóm khoá (mapping) / must be a mapping")
        return _Reader(self.file, value, f"{self.prefix}{key}.")

    def str(self, key: str, default: str | None = None, required: bool = True) -> str | None:
        value = self.data.get(key, default)
        if value is None:
            if required:
                raise self.fail(key, "thiếu giá trị / missing")
            return None
        if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value).strip() == "":
            raise self.fail(key, f"phải là chuỗi không rỗng, đang là {value!r} / must be a non-empty string")
        return str(value).strip()

    def int(self, key: str, default: int | None = None, lo: int | None = None, hi: int | None = None) -> int:
        value = self.data.get(key, default)
        if value is None:
            raise self.fail(key, "thiếu giá trị / missing")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"phải là số nguyên, đang là {value!r} / must be an integer")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.fail(key, f"phải trong khoảng {lo}..{hi}, đang là {value} / out of range")
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"phải là true hoặc false, đang là {value!r} / must be a boolean")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str:
        value = self.str(key, default)
        assert value is not None
        if value not in choices:
            raise self.fail(key, f"phải là một trong {', '.join(choices)}, đang là {value!r}")
        return value

    def str_list(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, [])
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(key, "phải là danh sách chuỗi / must be a list of strings")
        return tuple(v.strip() for v in value)

    def path(self, key: str, base: Path, default: str | None = None) -> Path:
        value = self.str(key, default)
        assert value is not None
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (base / p)

    def check_keys(self, allowed: set[str]) -> None:
        for key in self.data:
            if key == "password":
                raise self.fail("password", "không ghi mật khẩu vào config; đặt nó trong biến môi trường mà "
                                "password_env nêu tên / never put a password in config, use password_env")
            if key not in allowed:
                raise self.fail(str(key), f"khoá không được hỗ trợ / unknown key (cho phép: {', '.join(sorted(allowed))})")


_SERVER_KEYS = {"host", "port", "security", "username", "password_env", "timeout", "ca_file", "auth", "oauth"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _oauth(r: _Reader, base: Path) -> OAuthConfig:
    for key in ("client_secret", "refresh_token", "access_token"):
        if key in r.data:
            raise r.fail(key, f"không ghi bí mật vào config; đặt nó trong biến môi trường mà {key}_env nêu tên "
                              f"/ never put a secret in config, use {key}_env")
    r.check_keys({"client_id", "client_secret_env", "refresh_token_env", "refresh_token_file", "token_uri"})
    client_id = r.str("client_id")
    assert client_id is not None
    envs: dict[str, str | None] = {}
    for key in ("client_secret_env", "refresh_token_env"):
        envs[key] = r.str(key, required=key == "client_secret_env")
        if envs[key] and not _ENV_NAME.fullmatch(envs[key] or ""):
            raise r.fail(key, f"phải là tên biến môi trường, đang là {envs[key]!r}")
    token_file: Path | None = None
    if r.str("refresh_token_file", required=False):
        token_file = r.path("refresh_token_file", base)
    if (envs["refresh_token_env"] is None) == (token_file is None):
        raise r.fail("refresh_token_env", "cần đúng một trong refresh_token_env hoặc refresh_token_file "
                                          "/ exactly one of refresh_token_env, refresh_token_file")
    if token_file is not None:
        problem = secret_file_problem(token_file)
        if problem:
            raise r.fail("refresh_token_file", problem)
    from urllib.parse import urlsplit

    token_uri = r.str("token_uri", GOOGLE_TOKEN_URI)
    assert token_uri is not None
    parts = urlsplit(token_uri)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise r.fail("token_uri", f"phải là địa chỉ https://…, đang là {token_uri!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise r.fail("token_uri", f"http (không mã hoá) chỉ được phép với máy loopback, còn {parts.hostname!r} "
                                  "thì không; dùng https / plain http is only allowed for a loopback host")
    return OAuthConfig(client_id=client_id, client_secret_env=envs["client_secret_env"] or "",
                       refresh_token_env=envs["refresh_token_env"], refresh_token_file=token_file,
                       token_uri=token_uri)


def _server(r: _Reader, base: Path, default_port: dict[str, int]) -> dict[str, Any]:
    host = r.str("host")
    assert host is not None
    security = r.choice("security", SECURITY, "ssl")
    port = r.int("port", default_port[security], 1, 65535)
    if security == "plain" and not _is_loopback(host):
        raise r.fail(
            "security",
            f"'plain' (không mã hoá) chỉ được phép với máy chủ loopback, còn {host!r} thì không; "
            "dùng ssl hoặc starttls / plain is only allowed for a loopback host",
        )
    password_env = r.str("password_env", required=False)
    if password_env and not _ENV_NAME.fullmatch(password_env):
        raise r.fail("password_env", f"phải là tên biến môi trường, đang là {password_env!r}")
    if "password" in r.data:
        raise r.fail("password", "không ghi mật khẩu vào config; đặt nó trong biến môi trường mà password_env nêu tên")
    ca = r.str("ca_file", required=False)
    ca_path = None
    if ca:
        ca_path = r.path("ca_file", base)
        if not ca_path.is_file():
            raise r.fail("ca_file", f"không tìm thấy tệp {ca_path}")
    timeout = r.data.get("timeout", 60)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 600:
        raise r.fail("timeout", f"phải là số giây trong khoảng (0, 600], đang là {timeout!r}")
    auth = r.choice("auth", AUTH, "password")
    oauth = None
    if auth == "xoauth2":
        if not r.str("username", required=False):
            raise r.fail("username", "auth: xoauth2 cần username (địa chỉ Gmail) / xoauth2 needs the username")
        if password_env:
            raise r.fail("password_env", "auth: xoauth2 không dùng mật khẩu; bỏ password_env "
                                         "/ password_env and auth: xoauth2 exclude each other")
        oauth = _oauth(r.sub("oauth"), base)
    elif "oauth" in r.data:
        raise r.fail("oauth", "chỉ dùng khi auth: xoauth2 / only with auth: xoauth2")
    return dict(
        host=host,
        port=port,
        security=security,
        username=r.str("username", required=False),
        password_env=password_env,
        timeout=float(timeout),
        ca_file=ca_path,
        auth=auth,
        oauth=oauth,
    )


def load_config(path: str | Path) -> Config:
    """Read and validate config.yaml; raise ConfigError naming file and key on any bad value."""
    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: không đọc được tệp cấu hình: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML không hợp lệ: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: phải là một mapping YAML ở cấp cao nhất")
    return config_from_mapping(data, path)


def config_from_mapping(data: Mapping[str, Any], path: Path) -> Config:
    base = path.parent
    r = _Reader(path, data)
    r.check_keys(
        {"organisation", "year", "timezone", "mailbox", "smtp", "storage", "units", "staff", "rules",
         "templates", "keep_first_attempt_date", "worker", "desk"}
    )
    tzname = r.str("timezone", "Asia/Ho_Chi_Minh")
    assert tzname is not None
    try:
        tz = ZoneInfo(tzname)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise r.fail("timezone", f"múi giờ không tồn tại: {tzname!r}") from exc

    m = r.sub("mailbox")
    m.check_keys(_SERVER_KEYS | {"folder", "batch_size", "processed_keyword", "processed_folder", "trusted_authserv_ids"})
    keyword = m.str("processed_keyword", required=False)
    if keyword and not re.fullmatch(r"\$?[A-Za-z0-9_.-]+", keyword):
        raise m.fail("processed_keyword", f"từ khoá IMAP không hợp lệ: {keyword!r} (chỉ chữ, số, _ . -)")
    mailbox = MailboxConfig(
        **_server(m, base, {"ssl": 993, "starttls": 143, "plain": 143}),
        folder=m.str("folder", "INBOX") or "INBOX",
        batch_size=m.int("batch_size", 50, 1, 1000),
        processed_keyword=keyword,
        processed_folder=m.str("processed_folder", required=False),
        trusted_authserv_ids=m.str_list("trusted_authserv_ids"),
    )

    s = r.sub("smtp")
    s.check_keys(_SERVER_KEYS | {"sender", "per_minute", "per_day"})
    sender = s.str("sender")
    assert sender is not None
    if not _ADDR.match(_addr_of(sender)):
        raise s.fail("sender", f"không phải địa chỉ email hợp lệ: {sender!r}")
    smtp = SmtpConfig(
        **_server(s, base, {"ssl": 465, "starttls": 587, "plain": 25}),
        sender=sender,
        per_minute=s.int("per_minute", 20, 1, 10000),
        per_day=s.int("per_day", 400, 1, 100000),
    )

    st = r.sub("storage")
    st.check_keys({"database", "archive"})
    db = st.str("database")
    assert db is not None
    if "://" not in db:
        db_path = st.path("database", base)
        db = f"sqlite:///{db_path}"
    archive = st.path("archive", base)

    staff = r.str_list("staff")
    for i, addr in enumerate(staff):
        if not _ADDR.match(addr):
            raise r.fail(f"staff[{i}]", f"không phải địa chỉ email hợp lệ: {addr!r}")

    w = r.sub("worker", required=False)
    w.check_keys({"poll_minutes", "reminder_hour", "remind_cc_staff", "digest_weekday", "alert_after_minutes",
                  "quiet_alert_days", "quiet_days_before_deadline", "idle", "idle_renew_minutes"})
    renew = w.data.get("idle_renew_minutes", 10)
    if isinstance(renew, bool) or not isinstance(renew, (int, float)) or not 0.05 <= renew <= 29:
        # RFC 2177: a server may end IDLE after 30 minutes (Gmail does, after about 29)
        raise w.fail("idle_renew_minutes", f"phải là số phút trong khoảng 0.05..29, đang là {renew!r}")
    year = r.int("year", None, 2000, 2100)
    organisation = r.str("organisation")
    assert organisation is not None
    units_file = r.path("units", base, "units.csv")
    if not units_file.is_file():
        raise r.fail("units", f"không tìm thấy tệp danh sách đơn vị {units_file}")
    project_root = Path(__file__).resolve().parent.parent
    desk = _desk(r.sub("desk", required=False))
    return Config(
        path=path,
        organisation=organisation,
        year=year,
        timezone=tzname,
        tz=tz,
        mailbox=mailbox,
        smtp=smtp,
        database_url=db,
        archive_dir=archive,
        units_file=units_file,
        staff=staff,
        rules_dir=r.path("rules", base, str(project_root / "rules")),
        templates_dir=r.path("templates", base, str(project_root / "templates")),
        keep_first_attempt_date=r.bool("keep_first_attempt_date", False),
        poll_minutes=w.int("poll_minutes", 5, 1, 1440),
        reminder_hour=w.int("reminder_hour", 8, 0, 23),
        remind_cc_staff=w.bool("remind_cc_staff", False),
        digest_weekday=w.choice("digest_weekday", WEEKDAYS, "mon"),
        alert_after_minutes=w.int("alert_after_minutes", 60, 1, 7 * 24 * 60),
        quiet_alert_days=w.int("quiet_alert_days", 3, 0, 60),
        quiet_days_before_deadline=w.int("quiet_days_before_deadline", 7, 0, 60),
        idle=w.bool("idle", True),
        idle_renew_minutes=float(renew),
        desk=desk,
    )


_HASH = re.compile(r"^(scrypt|pbkdf2):[^$\s]+\$[^$\s]+\$[0-9a-f]+$")


def _desk(d: _Reader) -> DeskConfig:
    d.check_keys({"enabled", "host", "port", "session_minutes", "accounts"})
    host = d.str("host", "127.0.0.1")
    assert host is not None
    raw_accounts = d.data.get("accounts", []) or []
    if not isinstance(raw_accounts, list):
        raise d.fail("accounts", "phải là danh sách tài khoản / must be a list of accounts")
    accounts: list[DeskAccount] = []
    for i, item in enumerate(raw_accounts):
        if not isinstance(item, Mapping):
            raise d.fail(f"accounts[{i}]", "phải là mapping {username, name, password_hash}")
        a = _Reader(d.file, item, f"{d.prefix}accounts[{i}].")
        a.check_keys({"username", "name", "password_hash"})
        username = a.str("username")
        assert username is not None
        if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", username):
            raise a.fail("username", f"chỉ dùng chữ không dấu, số và _ . @ -, đang là {username!r}")
        if any(x.username.lower() == username.lower() for x in accounts):
            raise a.fail("username", f"tài khoản {username!r} bị khai báo hai lần")
        pw_hash = a.str("password_hash")
        assert pw_hash is not None
        if not _HASH.match(pw_hash):
            raise a.fail("password_hash", "phải là chuỗi băm do `intake desk hash-password` tạo ra, không phải mật khẩu")
        accounts.append(DeskAccount(username=username, name=a.str("name", username) or username, password_hash=pw_hash))
    return DeskConfig(
        enabled=d.bool("enabled", False),
        host=host,
        port=d.int("port", 8765, 1, 65535),
        session_minutes=d.int("session_minutes", 480, 5, 7 * 24 * 60),
        accounts=tuple(accounts),
    )
