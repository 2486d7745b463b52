"""The safety checks behind config.yaml's rules, also used at run time (desk, OAuth setup).

Unencrypted connections only to this machine (loopback), secrets only in the environment or in a file
readable by its owner alone and kept outside the repository.
"""
from __future__ import annotations

import ipaddress
import os
import re
import socket
from email.utils import parseaddr
from pathlib import Path

from pipeline.errors import ConfigError

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is this machine (a name that does not resolve is not)."""
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


def addr_of(value: str) -> str:
    """The bare lower-case address of ``"Name <a@b.c>"`` or ``a@b.c``."""
    return parseaddr(value)[1].lower()


def env_secret(name: str, what: str) -> str:
    """The secret in environment variable ``name``; ``what`` says what it is for, in the error."""
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
    if path.resolve().is_relative_to(PROJECT_ROOT):
        return (f"tệp {path} nằm trong thư mục mã nguồn {PROJECT_ROOT}; đặt nó ngoài repo, ví dụ "
                "/etc/intake/refresh-token / keep it outside the repository")
    if st.st_mode & 0o077:
        return (f"tệp {path} đang có quyền {st.st_mode & 0o777:o}: người khác đọc được; "
                f"chạy `chmod 600 {path}` / the file must be readable by its owner only")
    return None


def zone_name(value: str) -> str:
    """An IANA time zone name that exists (``Asia/Ho_Chi_Minh``), or a Vietnamese ValueError."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"múi giờ không tồn tại: {value!r}") from exc
    return value
