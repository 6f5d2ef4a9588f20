"""Reading and writing configs: YAML 1.2 files, `--a.b=value` overrides, type coercion with the
dataclass annotations, and where each key was set (`file:line` or the flag), so every `ConfigError`
names its source. The schema (`schema.py`) says what is valid; this module only gets values there.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from ..text_files import read_utf8
from .fields import ConfigError, type_name
from .schema import Config, validate_config


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with 1.2 scalars: only true/false are booleans (so `mixed_precision: no` stays the string
    "no") and `1e-5` is a float, as a researcher writing a config expects."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [
        (tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?$|^[-+]?\d+[eE][-+]?\d+$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
    ),
    list("-+0123456789."),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)  # a SafeLoader subclass: no arbitrary objects


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp` and convert YAML-ish values; raise naming `key`."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: expected {type_name(tp)}, got {value!r}", key=key)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}", key=key)
        return from_dict(tp, value, prefix=key)
    if origin in (list, tuple):
        (item_tp,) = typing.get_args(tp)[:1] or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}", key=key)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        k_tp, v_tp = typing.get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}", key=key)
        return {_coerce(k, k_tp, key): _coerce(v, v_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected bool (true/false), got {value!r}", key=key)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected int, got {value!r}", key=key)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected float, got {value!r}", key=key)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected str, got {value!r}", key=key)
    raise ConfigError(f"{key}: unsupported annotation {tp!r}", key=key)


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping; unknown keys and wrong types raise `ConfigError`."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"unknown config key '{full}'; {hint}valid keys{' of ' + prefix if prefix else ''}: {', '.join(names)}",
                key=full,
            )
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass -> plain nested dict (YAML/JSON-serialisable)."""
    return dataclasses.asdict(cfg)


def _parse_override(item: str) -> tuple[list[str], Any]:
    if not item.startswith("--") or "=" not in item:
        raise ConfigError(f"command-line argument {item!r} must look like --section.key=value")
    key, raw = item[2:].split("=", 1)
    try:
        return key.split("."), _yaml_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise ConfigError(f"command-line flag {item}: value is not valid YAML ({problem})") from None


def apply_overrides(
    data: dict[str, Any], overrides: list[str], sources: dict[str, str] | None = None
) -> dict[str, Any]:
    """Apply `--a.b=value` strings (values parsed as YAML) onto a nested dict; record each key's flag
    in `sources` (dotted key -> "command-line flag --a.b=value")."""
    for item in overrides:
        path, value = _parse_override(item)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"command-line flag {item}: '{part}' is not a section")
        node[path[-1]] = value
        if sources is not None:
            dotted = ".".join(path)
            for key in [k for k in sources if k == dotted or k.startswith(dotted + ".")]:
                del sources[key]
            _record_flag(sources, dotted, value, f"command-line flag {item}")
    return data


def _record_flag(sources: dict[str, str], dotted: str, value: Any, flag: str) -> None:
    """A flag's value replaces the node at `dotted`; a mapping value sets each of its keys."""
    sources[dotted] = flag
    if isinstance(value, dict):
        for key, sub in value.items():
            _record_flag(sources, f"{dotted}.{key}", sub, flag)


def _yaml_lines(node: Any, path: str, prefix: str, out: dict[str, str]) -> None:
    """Dotted key -> "file:line" for every key of a composed YAML node tree."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            out[key] = f"{path}:{key_node.start_mark.line + 1}"
            _yaml_lines(value_node, path, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            key = f"{prefix}[{i}]"
            out[key] = f"{path}:{item.start_mark.line + 1}"
            _yaml_lines(item, path, key, out)


def _source_of(key: str | None, sources: dict[str, str]) -> str | None:
    """Where `key` (or the nearest enclosing key) was set."""
    while key:
        if key in sources:
            return sources[key]
        cut = max(key.rfind("."), key.rfind("["))
        key = key[:cut] if cut > 0 else ""
    return None


def _read_yaml(path: str | os.PathLike, sources: dict[str, str]) -> dict[str, Any]:
    try:
        text = read_utf8(path, ConfigError)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = _yaml_load(text) or {}
        _yaml_lines(yaml.compose(text, Loader=_Yaml12Loader), str(path), "", sources)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping with sections model/data/train/eval")
    return data


def load_with_sources(path: str | os.PathLike | None, overrides: list[str]) -> tuple[Config, dict[str, str]]:
    """The validated config, and where each key was set (dotted key -> file:line or flag)."""
    sources: dict[str, str] = {}
    data = _read_yaml(path, sources) if path is not None else {}
    apply_overrides(data, overrides, sources)
    try:
        return validate_config(from_dict(Config, data)), sources
    except ConfigError as exc:
        where = _source_of(exc.key, sources) or (str(path) if path is not None and exc.key is None else None)
        if where is None:
            raise
        raise ConfigError(f"{where}: {exc}", key=exc.key) from None


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from defaults), apply overrides, validate every key, type and range.

    Errors name where the offending key was set: `file:line` or the command-line flag."""
    return load_with_sources(path, list(overrides or []))[0]


def keys_set_in(sources: dict[str, str]) -> set[str]:
    """The `section.key`s that `sources` (from `load_with_sources`) holds: the keys the YAML file or a
    flag set; the rest are defaults."""
    return {".".join(k.split("[")[0].split(".")[:2]) for k in sources if "." in k.split("[")[0]}


def dump_config(cfg: Config) -> str:
    """The config as YAML, every key in declaration order."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Config, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML, atomically."""
    from ..atomic_files import atomic_write_text

    return atomic_write_text(path, dump_config(cfg))
