"""Configuration: dataclasses, strict loading, dotted overrides, YAML/TOML files.

Every configurable thing in seqlab is a dataclass with a comment on each default. Configs are
built from plain dicts by `from_dict`, which rejects unknown keys (listing the valid ones),
checks types, and coerces command-line strings. `apply_overrides` handles minGPT-style dotted
keys such as ``train.lr=3e-3``. `check_range` is what each dataclass's ``__post_init__`` uses
to reject out-of-range and non-finite numbers with a one-line message.
"""

from __future__ import annotations

import dataclasses
import functools
import math
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
    if data is None:
        data = {}
    if not isinstance(data, Mapping):  # before dict(): dict(5) or dict("ab") would raise
        raise SeqlabError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys to "
                          f"values, got {_short(data)}")
    data = dict(data)
    names = field_names(cls)
    unknown = sorted(set(data) - set(names), key=str)  # YAML keys may be ints or None too
    if unknown:
        where = f" in {prefix.rstrip('.')}" if prefix else ""
        raise SeqlabError(
            f"unknown config key {prefix}{unknown[0]}; valid keys{where}: {', '.join(names)}"
        )
    as_type: type = cls  # mypy does not see a type[T] as Hashable, which the cache asks for
    hints = _type_hints(as_type)
    for f in dataclasses.fields(as_type):  # a partial nested section refines its own default
        default = _field_default(f)
        if f.name in data and isinstance(data[f.name], Mapping) and default is not None:
            data[f.name] = merged(default, dict(data[f.name]))
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise SeqlabError(f"{prefix or 'config'}: {e}") from None


def _field_default(f: dataclasses.Field[Any]) -> dict[str, Any] | None:
    """A nested-config field's default as a dict (None unless it is a dataclass): the values
    that a partial override such as ``model.conv.kernel_size=3`` keeps, so the family's own
    default section (not the section class's) is what the other keys come from."""
    factory = f.default_factory
    value = factory() if factory is not dataclasses.MISSING else f.default
    return to_dict(value) if dataclasses.is_dataclass(value) else None


def check_range(key: str, value: Any, rule: str, *, null: bool = False) -> None:
    """Raise a one-line `SeqlabError` unless `value` is a finite number obeying `rule`.

    `rule` is what the message says: ``"> 0"``, ``">= 1"``, ``"<= 4294967295"``, ``"in [0, 1)"``,
    ``"in (0, 1]"``, or ``"finite"`` for any finite number. With `null`, None is accepted too.
    NaN fails every rule (comparisons with NaN are false), and so does an infinity, since an
    infinite learning rate, clip or tolerance is never what was meant.
    """
    if value is None and null:
        return
    if _obeys(value, rule):
        return
    finite = "" if rule == "finite" or _is_finite(value) else "finite and "
    raise SeqlabError(f"{key} must be {finite}{rule}{' or null' if null else ''}, got "
                      f"{_short(value)}")


def _is_finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)  # isfinite(10**400) would overflow


def _obeys(value: Any, rule: str) -> bool:
    if not _is_finite(value):
        return False
    if rule == "finite":
        return True
    if rule.startswith("in "):  # an interval: "in [lo, hi)" and the like
        lo, hi = (_number(x) for x in rule[4:-1].split(","))
        above = lo < value if rule[3] == "(" else lo <= value
        return above and (value < hi if rule[-1] == ")" else value <= hi)
    op, bound = rule.split()
    b = _number(bound)
    return {">": value > b, ">=": value >= b, "<": value < b, "<=": value <= b}[op]


def _number(text: str) -> float:
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else float(text)


def _short(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to one short line, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """`typing.get_type_hints`, once per class: it compiles every string annotation, which
    made it most of the time spent resolving a config."""
    return typing.get_type_hints(cls)


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
        raise SeqlabError(errors[0] if errors else f"{key}: got {_short(value)}")
    if origin is Literal:
        if value in args:
            return value
        raise SeqlabError(f"{key}: expected one of {', '.join(map(str, args))}; got "
                          f"{_short(value)}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, Sequence):
            raise SeqlabError(f"{key}: expected a list, got {_short(value)}")
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
            try:
                return float(value)
            except OverflowError:  # an int with hundreds of digits
                return math.inf if value > 0 else -math.inf
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise SeqlabError(f"{key}: expected {tp.__name__}, got {_short(value)}")


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
    for section, value in data.items():  # e.g. `model: 5`
        if value is not None and not isinstance(value, dict):
            raise SeqlabError(f"{path}: expected section {section} to be a mapping of keys to "
                              f"values, got {_short(value)}")
    return data


def merged(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`base` with `top`'s keys laid over it, section by section (a new dict)."""
    out = dict(base)
    for k, v in top.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to a nested dict (in place, returned)."""
    for item in overrides:
        key, sep, raw = item.removeprefix("--").partition("=")
        *parents, leaf = key.split(".")
        # A bare `train=5` would replace the whole section with a string.
        if not sep or not parents or not all((*parents, leaf)):
            raise SeqlabError(f"expected an override of the form section.key=value, got "
                              f"{_short(item)}")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SeqlabError(f"override {item!r}: {p} is not a section")
        node[leaf] = raw
    return data
