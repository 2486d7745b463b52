"""Validates YAML files with pydantic models; every problem becomes one ConfigError naming file and key.

The project's error format is ``<file>: <dotted.key>: <what is wrong>``, e.g.
``config.yaml: mailbox.security: 'plain' … only allowed for a loopback host``; list items show as
``staff[1]``. Pydantic's own wording is translated for the common cases (missing, unknown key, wrong
type, out of range) so that a Vietnamese reader gets the same bilingual text as from the other checks.

A validator that knows a more precise key than the one it runs on (a model validator that compares
two fields, a list validator that finds a duplicate item) raises :class:`Problem` with that key,
relative to where it runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable, Mapping, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, Strict, ValidationError

from pipeline.errors import ConfigError

T = TypeVar("T", bound=BaseModel)


class Problem(ValueError):
    """A validator's finding about ``key`` (relative: ``"security"``, ``"[2].username"``)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key, self.problem = key, problem


def as_text(value: object) -> str:
    # A YAML scalar such as `folder: 2022` is meant as text; true/false or an empty value are not.
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise ValueError(f"phải là chuỗi không rỗng, đang là {value!r} / must be a non-empty string")
    return str(value).strip()


Text = Annotated[str, BeforeValidator(as_text)]
"""A non-empty string, stripped; a YAML integer is taken as its text."""


def _within(lo: float, hi: float) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not lo <= value <= hi:
            raise ValueError(f"phải trong khoảng {lo}..{hi}, đang là {value!r} / out of range")
        return value
    return check


def int_in(lo: int, hi: int) -> Any:
    """An integer (not a boolean, not a string of digits) in ``lo..hi``."""
    return Annotated[int, Strict(), AfterValidator(_within(lo, hi))]


def number_in(lo: float, hi: float) -> Any:
    """An integer or decimal number (not a boolean) in ``lo..hi``, as a float."""
    return Annotated[float, Strict(), AfterValidator(_within(lo, hi))]


def read_mapping(path: Path, *, empty_ok: bool = False) -> dict[str, Any]:
    """The top-level mapping of the YAML file at ``path``; unreadable, invalid or not a mapping is a ConfigError.
    ``empty_ok``: a file with no document (empty, or comments only) is an empty mapping."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: không đọc được tệp / cannot read: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML không hợp lệ / invalid YAML: {exc}") from exc
    if data is None and empty_ok:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: phải là một nhóm khoá (mapping) ở cấp cao nhất / the top level must be a mapping")
    return dict(data)


def validate(model: type[T], data: object, path: Path, prefix: str = "", *,
             context: Mapping[str, Any] | None = None) -> T:
    """``model.model_validate(data)``; a ValidationError becomes a ConfigError, one line per problem.

    ``prefix`` is put before every key (``"mailbox."`` when ``data`` is that section); ``context`` reaches
    the validators as ``info.context`` (e.g. the folder that relative paths are resolved against).
    """
    try:
        return model.model_validate(data, context=dict(context) if context is not None else None)
    except ValidationError as exc:
        lines = [_line(err, path, prefix) for err in exc.errors(include_url=False)]
        raise ConfigError("\n".join(dict.fromkeys(lines))) from None


def dotted(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """``("staff", 1)`` → ``staff[1]``; ``("desk", "accounts", 0, "name")`` → ``desk.accounts[0].name``."""
    key = prefix
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key += f".{part}" if key and not key.endswith(".") else str(part)
    return key.rstrip(".")


def _line(err: Any, path: Path, prefix: str) -> str:
    loc = tuple(err["loc"])
    error = (err.get("ctx") or {}).get("error")
    if isinstance(error, Problem):
        key = error.key
        loc += tuple(int(k) if k.isdigit() else k for k in key.replace("[", ".").replace("]", "").split(".") if k)
        return f"{path}: {dotted(loc, prefix) or '(gốc / top level)'}: {error.problem}"
    return f"{path}: {dotted(loc, prefix) or '(gốc / top level)'}: {_problem(err)}"


def _problem(err: Any) -> str:
    """Pydantic's message in the project's bilingual wording where we have one."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind == "missing":
        return "thiếu giá trị / missing"
    if kind == "extra_forbidden":
        return "khoá không được hỗ trợ / unknown key"
    if kind in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
        return f"phải là một nhóm khoá (mapping), đang là {value!r} / must be a mapping"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"phải là số nguyên, đang là {value!r} / must be an integer"
    if kind in ("float_type", "float_parsing"):
        return f"phải là một số, đang là {value!r} / must be a number"
    if kind in ("bool_type", "bool_parsing"):
        return f"phải là true hoặc false, đang là {value!r} / must be a boolean"
    if kind in ("string_type", "string_too_short"):
        return f"phải là chuỗi không rỗng, đang là {value!r} / must be a non-empty string"
    if kind in ("list_type", "tuple_type"):
        return f"phải là một danh sách, đang là {value!r} / must be a list"
    if kind == "literal_error":
        return f"phải là một trong {_choices(ctx)}, đang là {value!r}"
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()), "?")
        return f"phải {_BOUNDS[kind]} {bound}, đang là {value!r} / out of range"
    return str(err["msg"])


_BOUNDS = {"greater_than_equal": "≥", "less_than_equal": "≤", "greater_than": ">", "less_than": "<"}


def _choices(ctx: Mapping[str, Any]) -> str:
    # pydantic gives "'ssl', 'starttls' or 'plain'"; the project writes "ssl, starttls, plain"
    return str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
