"""Configuration: dataclasses, strict loading, dotted overrides, YAML/TOML files.

Every configurable thing in seqlab is a dataclass with a comment on each default. Configs are
built from plain dicts by `from_dict`, which rejects unknown keys (listing the valid ones),
checks types, and coerces command-line strings. `apply_overrides` handles minGPT-style dotted
keys such as ``train.lr=3e-3``.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from seqlab.errors import SeqlabError

T = TypeVar("T")


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def from_dict(cls: type[T], data: Mapping[str, Any] | None, *, prefix: str = "") -> T:
    """Build dataclass `cls` from `data`, strictly: unknown keys and wrong types are errors."""
    data = dict(data or {})
    if not isinstance(data, dict):
        raise SeqlabError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    names = field_names(cls)
    unknown = sorted(set(data) - set(names))
    if unknown:
        where = f" in {prefix.rstrip('.')}" if prefix else ""
        raise SeqlabError(
            f"unknown config key {prefix}{unknown[0]}; valid keys{where}: {', '.join(names)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise SeqlabError(f"{prefix or 'config'}: {e}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as a JSON-ready dict (tuples become lists)."""
    return typing.cast(dict, _jsonable(dataclasses.asdict(obj)))


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against annotation `tp`, converting strings from the command line."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(typing.cast(type, tp), value, prefix=f"{key}.")
    if origin in (Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_none and type(None) in args:
            return None
        errors = []
        for a in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, a, key)
            except SeqlabError as e:
                errors.append(str(e))
        raise SeqlabError(errors[0] if errors else f"{key}: got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise SeqlabError(f"{key}: expected one of {', '.join(map(str, args))}; got {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, Sequence):
            raise SeqlabError(f"{key}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    return _coerce_scalar(value, tp, key)


def _coerce_scalar(value: Any, tp: type, key: str) -> Any:
    if isinstance(value, str) and tp is not str:
        value = parse_value(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise SeqlabError(f"{key}: expected {tp.__name__}, got {value!r}")


def parse_value(text: str) -> Any:
    """A command-line value: numbers (1, 2.5, 3e-3), YAML scalars (true, null) or the string."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    try:
        v = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return v if isinstance(v, int | float | bool | list) or v is None else text


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or TOML (.toml) config file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise SeqlabError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        kind = "TOML" if path.suffix == ".toml" else "YAML"
        msg = str(e).splitlines()[0]
        raise SeqlabError(f"{path}: expected a {kind} config file, got a parse error: {msg}"
                          ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SeqlabError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to a nested dict (in place, returned)."""
    for item in overrides:
        key, sep, raw = item.removeprefix("--").partition("=")
        if not sep or not key:
            raise SeqlabError(f"expected an override of the form section.key=value, got {item!r}")
        *parents, leaf = key.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SeqlabError(f"override {item!r}: {p} is not a section")
        node[leaf] = raw
    return data
