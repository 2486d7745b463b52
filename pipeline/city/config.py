"""city.yaml: the city federation, the year it looks at, and the config files of its districts.

    name: "Liên đoàn Lao động thành phố Hà Nội"
    year: 2022                 # optional: default, each district's own `year`
    timezone: Asia/Ho_Chi_Minh # optional: the day the figures are "as of"
    districts:                 # the districts' config.yaml files, relative to this file
      - long-bien/config.yaml
      - hoan-kiem/config.yaml
    out: reports               # optional: where `intake city report` writes (default: reports/ beside city.yaml)
    serve: {host: 127.0.0.1, port: 8770}   # optional: `intake city serve`, loopback only

Checked like config.yaml (pipeline/schema.py): every mistake is a ConfigError "city.yaml: districts[1]: …".
Each district file is then read by load_config, so its own mistakes name its own file; two entries naming
the same ledger (same file, or same database and ``district``) are refused, as the city would count that
district twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, Field, field_validator

from pipeline.config import Config, load_config
from pipeline.errors import ConfigError
from pipeline.schema import Problem, Text, int_in, read_mapping, validate
from pipeline.settings_checks import is_loopback, zone_name
from pipeline.settings_file import FilePath, Section


def _present(value: object) -> object:
    return {} if value is None else value


class ServeSection(Section):
    host: Text = "127.0.0.1"
    port: int_in(1, 65535) = 8770

    @field_validator("host")
    @classmethod
    def _loopback(cls, value: str) -> str:
        # The page has no log-in (see page.py): it is only ever offered to this machine.
        if not is_loopback(value):
            raise ValueError(f"trang tổng hợp của thành phố chỉ mở trên máy này (127.0.0.1, ::1, localhost), "
                             f"không mở trên {value!r} / the city page serves loopback only")
        return value


class CityFile(Section):
    name: Text
    year: int_in(2000, 2100) | None = None
    timezone: Text = "Asia/Ho_Chi_Minh"
    districts: Annotated[list[FilePath], Field(min_length=1)]
    out: FilePath | None = None
    serve: Annotated[ServeSection, BeforeValidator(_present)] = ServeSection()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return zone_name(value)

    @field_validator("districts", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        if value is None or value == []:
            raise ValueError("phải liệt kê ít nhất một tệp cấu hình của quận, huyện / list at least one "
                             "district's config file")
        return value

    @field_validator("districts")
    @classmethod
    def _exist(cls, paths: list[Path]) -> list[Path]:
        seen: dict[Path, int] = {}
        for i, path in enumerate(paths):
            if not path.is_file():
                raise Problem(f"[{i}]", f"không tìm thấy tệp cấu hình {path} / no such file")
            real = path.resolve()
            if real in seen:
                raise Problem(f"[{i}]", f"tệp {path} đã có ở districts[{seen[real]}]; mỗi quận chỉ kê một lần "
                                        "/ listed twice")
            seen[real] = i
        return paths


@dataclass(frozen=True)
class City:
    path: Path
    name: str
    year: int | None
    timezone: str
    districts: tuple[Config, ...]  # in the order of city.yaml
    out_dir: Path
    host: str
    port: int

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def load_city(path: str | Path) -> City:
    """Read and check city.yaml and every district's config file; a mistake is a ConfigError naming the file
    and key (the district's own file for a mistake in it)."""
    path = Path(path).resolve()
    f = validate(CityFile, read_mapping(path), path, context={"base": path.parent})
    configs = tuple(load_config(p) for p in f.districts)
    ledgers: dict[str, int] = {}
    for i, cfg in enumerate(configs):
        if cfg.database_url in ledgers:
            j = ledgers[cfg.database_url]
            raise ConfigError(f"{path}: districts[{i}]: {cfg.path} dùng chung sổ ghi với districts[{j}] "
                              f"({configs[j].path}): cùng cơ sở dữ liệu và cùng mã quận `district: {cfg.district}`; "
                              "mỗi quận phải có sổ ghi riêng / two districts share one ledger")
        ledgers[cfg.database_url] = i
    return City(path=path, name=f.name, year=f.year, timezone=f.timezone, districts=configs,
                out_dir=f.out or path.parent / "reports", host=f.serve.host, port=f.serve.port)


__all__ = ["City", "CityFile", "load_city"]
