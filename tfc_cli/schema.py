"""Typed config dataclasses built from YAML mappings, with every problem tied to a line.

Each recipe section and each stage config is a frozen dataclass whose fields carry their help text and
allowed range (`param(...)`). `build()` turns a `LineDict` into one, collecting all problems: unknown keys
(with a "did you mean"), missing required keys, wrong types and out-of-range values.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import reprlib
import types
import typing
from typing import Any, Literal

from .errors import Problem
from .yaml_lines import LineDict

REQUIRED = dataclasses.MISSING


def param(default=REQUIRED, *, help: str, min=None, max=None, min_exclusive: bool = False):  # noqa: A002
    """A config field: its default, one line of help, and an optional numeric range."""
    meta = {"help": help, "min": min, "max": max, "min_exclusive": min_exclusive}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def short_repr(value, limit: int = 80) -> str:
    """repr() cut to `limit` characters: an error message never grows with the value it quotes."""
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxdict, short.maxstring, short.maxother = 3, 6, 6, limit, limit
    text = short.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def suggest(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def describe_type(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(describe_type(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp) -> tuple[bool, Any]:
    """(ok, value converted to tp). Floats accept ints and '5e-5' strings (a YAML 1.1 quirk); never nan or inf."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if origin is Literal:  # 4.0 == 4 and True == 1 in Python; a Literal[4, 8] takes the int 4 only
        return any(value == a and type(value) is type(a) for a in typing.get_args(tp)), value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, converted = _coerce(value, arg)
            if ok:
                return True, converted
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return False, value
        try:
            number = float(value)
        except ValueError:
            return False, value
        return math.isfinite(number), number
    if tp is str:
        return isinstance(value, str), value
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    if origin is list or tp is list:
        return isinstance(value, list), value
    return isinstance(value, tp), value


def _check_range(name: str, value, meta) -> str | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and (value <= lo if meta.get("min_exclusive") else value < lo):
        return f"'{name}' must be {'>' if meta.get('min_exclusive') else '>='} {lo}, got {value}"
    if hi is not None and value > hi:
        return f"'{name}' must be <= {hi}, got {value}"
    return None


def build(cls, data, problems: list[Problem], *, section: str, line: int | None = None):
    """Build dataclass `cls` from mapping `data`, appending problems. Returns None if any field is bad."""
    if data is None:
        data = LineDict()
        data.line, data.key_lines = line or 0, {}
    if not isinstance(data, dict):
        problems.append(Problem(getattr(data, "line", line), f"'{section}' must be a mapping, got {type(data).__name__}"))
        return None
    line_of = data.line_of if isinstance(data, LineDict) else (lambda _k: line)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    start = len(problems)
    for key in data:
        if key not in fields:
            problems.append(Problem(line_of(key), f"unknown key '{key}' in {section}{suggest(key, fields)}"))
    values = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is REQUIRED and f.default_factory is REQUIRED:
                problems.append(Problem(getattr(data, "line", line), f"missing required key '{name}' in {section}"))
            continue
        raw, tp = data[name], hints[name]
        if dataclasses.is_dataclass(tp):
            values[name] = build(tp, raw, problems, section=f"{section}.{name}", line=line_of(name))
            continue
        ok, value = _coerce(raw, tp)
        if not ok:
            problems.append(Problem(line_of(name), f"'{name}' in {section} must be {describe_type(tp)}, got {short_repr(raw)}"))
            continue
        bad_range = _check_range(name, value, f.metadata)
        if bad_range:
            problems.append(Problem(line_of(name), f"{bad_range} (in {section})"))
            continue
        values[name] = value
    if len(problems) > start:
        return None
    return cls(**values)


def field_docs(cls, prefix: str = "") -> list[dict]:
    """Name, type, default and help of every field: what `tfc stages` prints. Nested sections are flattened
    (`distill.layer_alpha`)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += field_docs(hints[f.name], prefix=f"{prefix}{f.name}.")
            continue
        if f.default is not REQUIRED:
            default = repr(f.default)
        elif f.default_factory is not REQUIRED:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        out.append({"name": prefix + f.name, "type": describe_type(hints[f.name]), "default": default, "help": f.metadata.get("help", "")})
    return out
