"""Command-line arguments of the config commands: `--config FILE`, `--section.key=value` overrides,
the flag aliases (`--resume`, `--resume-if-present`, `--allow-changed=a,b`) and the action flags that
change what a command does rather than the config. `parse_cli` returns the validated config together
with the keys that were set and where.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..config import Config, ConfigError, keys_set_in, load_with_sources

#: command-line flags that are not config keys, and what they stand for
FLAG_OVERRIDES = {
    "--resume": "--train.resume=true",
    "--resume-if-present": "--train.resume_if_present=true",
}
#: flags that change what the command does, not the config
ACTION_FLAGS = ("--help", "-h", "--print-config", "--debug", "--overwrite")


@dataclass
class ParsedCLI:
    """What `parse_cli` returns: the resolved `config`, the raw `overrides`, the `section.key`s the
    YAML file or a flag set (`explicit`), where each key was set (`sources`: key -> file:line or flag),
    the config file (`config_path`) and the action flags given (`flags`: --print-config, --debug, --overwrite)."""

    config: Config
    overrides: list[str]
    explicit: set[str]
    sources: dict[str, str]
    config_path: str | None = None
    flags: frozenset[str] = frozenset()


def split_cli(argv: list[str]) -> tuple[str | None, list[str], set[str]]:
    """argv -> (config file, `--a.b=value` overrides, action flags). Flag aliases become overrides:
    `--resume`, `--resume-if-present`, `--allow-changed=a,b`."""
    path = None
    overrides: list[str] = []
    flags: set[str] = set()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config":
            if i + 1 >= len(argv):
                raise ConfigError("--config needs a file path")
            path = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        elif arg in FLAG_OVERRIDES:
            overrides.append(FLAG_OVERRIDES[arg])
        elif arg.startswith("--allow-changed="):
            keys = [k.strip() for k in arg.split("=", 1)[1].split(",") if k.strip()]
            overrides.append(f"--train.allow_changed=[{', '.join(json.dumps(k) for k in keys)}]")
        elif arg in ACTION_FLAGS:
            flags.add("--help" if arg == "-h" else arg)
        else:
            overrides.append(arg)
        i += 1
    return path, overrides, flags


def parse_cli(argv: list[str]) -> ParsedCLI:
    """`--config FILE` plus `--a.b=value` overrides (and aliases, action flags) -> `ParsedCLI`."""
    path, overrides, flags = split_cli(argv)
    cfg, sources = load_with_sources(path, overrides)
    return ParsedCLI(cfg, overrides, keys_set_in(sources), sources, path, frozenset(flags))
