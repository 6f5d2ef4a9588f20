"""`--help` of the config commands: usage, options, and every config key with its type, default and
one-line description, generated from the schema (only PyYAML is imported, never torch, so it answers
at once)."""

from __future__ import annotations

from typing import Any

from ..config import Config, describe_fields
from .running import DEBUG_ENV

CONFIG_OPTIONS = [
    ("--config FILE", "YAML config file (sections model, data, train, eval)"),
    ("--section.key=VALUE", "override one key; VALUE is YAML (1e-5, true, null, [a, b], {A: 2})"),
    ("--print-config", "print the resolved config as YAML and exit"),
    ("--overwrite", "write into an output folder that holds another run's or model's results"),
    ("--debug", f"show the traceback of expected errors (or {DEBUG_ENV}=1)"),
    ("-h, --help", "show this help and exit"),
]
TRAIN_OPTIONS = [
    ("--resume", "continue from the newest complete checkpoint (none: an error)"),
    ("--resume-if-present", "resume when a complete checkpoint exists, else start (SLURM, requeue)"),
    ("--allow-changed=KEYS", "comma-separated run-defining keys that may differ from the checkpoint's"),
]


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def config_help(prog: str, summary: str, extra: list[tuple[str, str]] = ()) -> str:
    """Usage, options and every config key with type, default and description (from the dataclasses)."""
    options = list(extra) + CONFIG_OPTIONS
    width = max(len(o) for o, _ in options)
    lines = [
        f"usage: {prog} [--config FILE] [--section.key=VALUE ...] [options]",
        "",
        summary,
        "",
        "options:",
    ]
    lines += [f"  {o:<{width}}  {h}" for o, h in options]
    lines += ["", "config keys (set in the YAML file or as --section.key=VALUE):"]
    rows = describe_fields(Config)
    width = max(len(k) for k, *_ in rows)
    section = None
    for key, type_name, default, help_text in rows:
        if key.split(".")[0] != section:
            section = key.split(".")[0]
            lines.append(f"  {section}:")
        lines.append(f"    {key:<{width}}  {help_text} ({type_name}, default: {_yaml_value(default)})")
    lines.append(
        "  data.pairs[i] (each a mapping with name, path, image_root, weight, column names; see docs)"
    )
    return "\n".join(lines) + "\n"
