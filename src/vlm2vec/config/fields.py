"""How a config field declares itself: one-line help, allowed range, fixed choices, and the mode under
which it is read. Every value rule of the project sits on its field (`opt(...)`), so the generic
checks here, the `--help` text and any module that needs the list of choices (`choices_of`) read the
same declaration; nothing else keeps a copy.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from typing import Any, NamedTuple

from ..errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration key or value is invalid; the message names the key (and, once located by
    `load_config`, the file:line or flag that set it). `key`: the dotted key, when there is one."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


class Section:
    """Base of the config sections: `validate()` holds the rules that tie several of its fields
    together (each field's own range and choices are checked from its declaration)."""

    def validate(self) -> None:
        """Raise `ConfigError` naming the key when fields contradict each other; none by default."""


class Check(NamedTuple):
    """A range rule for a number: `test(value)` must hold; `wants` says what it asks for."""

    test: Callable[[Any], bool]
    wants: str


POSITIVE = Check(lambda v: v > 0, "must be > 0")
AT_LEAST_1 = Check(lambda v: v >= 1, "must be >= 1")
AT_LEAST_0 = Check(lambda v: v >= 0, "must be >= 0")
UNIT = Check(lambda v: 0 <= v < 1, "must be in [0, 1)")
FINITE = Check(lambda v: True, "must be finite")


def opt(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Any = dataclasses.MISSING,
    choices: tuple[str, ...] | None = None,
    check: Check | None = None,
    applies_when: dict[str, tuple[Any, ...]] | None = None,
) -> Any:
    """A config field with its one-line description (shown by ``--help``; every field must have one).

    ``factory`` builds mutable defaults (lists, dicts); ``choices`` are the only values allowed;
    ``check`` is the range of a number (None stays allowed for optional keys); ``applies_when``
    ({other field: values}) says under which mode of the same section the field is read at all (every
    pair must hold); set to another value where it does not apply, `validate_config` refuses it.
    """
    if not help:
        raise TypeError("every config field needs a one-line help text")
    metadata = {"help": help, "choices": choices, "check": check, "applies_when": applies_when}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _field(section: type, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(section):
        if f.name == name:
            return f
    raise KeyError(f"{section.__name__} has no field {name!r}")


def choices_of(section: type, name: str) -> tuple[str, ...]:
    """The values field `name` of the section dataclass allows, as declared on the field."""
    choices = _field(section, name).metadata.get("choices")
    if choices is None:
        raise KeyError(f"{section.__name__}.{name} declares no choices")
    return choices


def check_number(key: str, value: Any, check: Check) -> None:
    """`ConfigError` naming `key` unless `value` is None or a finite number that passes `check`."""
    if value is None:
        return
    if (isinstance(value, float) and not math.isfinite(value)) or not check.test(value):
        raise ConfigError(f"{key} {check.wants}, got {value!r}", key=key)


def check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}; got {key}: {value!r}", key=key)


def check_fields(section: Any, prefix: str) -> None:
    """Every field's declared range and choices on one section instance (`prefix`: its name)."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if f.metadata.get("check") is not None:
            check_number(f"{prefix}.{f.name}", value, f.metadata["check"])
        if f.metadata.get("choices") is not None:
            check_choice(f"{prefix}.{f.name}", value, f.metadata["choices"])


def changed_fields(section: Any) -> set[str]:
    """Names of the fields whose value differs from the default: the settings someone chose (a saved
    config lists every key, so a default value never counts as set)."""
    default = type(section)()
    return {
        f.name for f in dataclasses.fields(section) if getattr(section, f.name) != getattr(default, f.name)
    }


class UnusedSetting(NamedTuple):
    """A set field that the section's mode would ignore: `mode` is the field choosing the mode,
    `read_with` the mode values under which `name` is read."""

    name: str
    mode: str
    read_with: tuple[Any, ...]
    now: Any


def unused_settings(section: Any, names: set[str]) -> list[UnusedSetting]:
    """Of the set fields `names`, those whose `applies_when` mode is not the section's current one. A
    mode still empty ("", e.g. `model.backbone` before it is detected from the model folder) is not
    decided yet, so its rule waits (the loader checks again once it is)."""
    found = []
    for f in dataclasses.fields(section):
        rule = f.metadata.get("applies_when")
        if f.name not in names or not rule:
            continue
        for mode, read_with in rule.items():
            now = getattr(section, mode)
            if now != "" and now not in read_with:
                found.append(UnusedSetting(f.name, mode, read_with, now))
    return found


def _spell(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def unused_message(section: Any, prefix: str, unused: UnusedSetting) -> str:
    """The one line refusing `unused`: key, value and the mode that would ignore it."""
    key = f"{prefix}.{unused.name}"
    if unused.mode == "backbone":
        return (
            f"{key}={getattr(section, unused.name)!r}: the {unused.now} backbone does not read this setting "
            f"(only {', '.join(unused.read_with)}); remove it"
        )
    return (
        f"{key} is read only with {prefix}.{unused.mode}={' or '.join(_spell(v) for v in unused.read_with)}, "
        f"not {_spell(unused.now)}; remove it"
    )


def check_no_unused_settings(section: Any, prefix: str) -> None:
    """`ConfigError` for a changed field that the chosen mode would ignore (an input we would not
    honour is an error, never a silent default). The one rule for every section, driven by the
    fields' `applies_when`."""
    for unused in unused_settings(section, changed_fields(section)):
        raise ConfigError(unused_message(section, prefix, unused), key=f"{prefix}.{unused.name}")


def without_unused_settings(section: Any, mode: str) -> Any:
    """A copy of `section` with the settings that `mode` (a field) makes unused back at their defaults:
    for a mode a loader forces (evaluation never trains, so `model.lora` becomes false) over a folder
    whose saved settings were written for the other mode. Settings unused for other reasons stay, to
    be refused."""
    unused = {u.name for u in unused_settings(section, changed_fields(section)) if u.mode == mode}
    if not unused:
        return section
    default = type(section)()
    return dataclasses.replace(section, **{name: getattr(default, name) for name in unused})


def type_name(tp: Any) -> str:
    """How `--help` and type errors spell an annotation."""
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def describe_fields(cls: type, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """Every key of a config dataclass as (dotted key, type, default, help), walking nested sections
    and lists of sections (for `--help`)."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += describe_fields(tp, f"{key}.")
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        rows.append((key, type_name(tp), default, f.metadata.get("help", "")))
        item = (typing.get_args(tp) or (None,))[0]
        if typing.get_origin(tp) is list and dataclasses.is_dataclass(item):
            rows += describe_fields(item, f"{key}[i].")
    return rows
