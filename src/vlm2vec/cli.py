"""The `vlm2vec` command line: `vlm2vec train ...`, `vlm2vec eval ...` (train.py and evaluate.py call
the same functions), every expected error as one line with exit status 2.

Why our own parser rather than tyro, draccus or jsonargparse: the config is already one set of typed
dataclasses with a one-line help on every field (`config.opt`), read from YAML with YAML 1.2 values
(`mixed_precision: no` stays the string "no", `1e-5` is a float) in files and flags alike. The
libraries would add a dependency, parse flag values by their own rules (a second value syntax beside
the YAML files), and format errors without the file:line of the YAML key at fault. Walking the
dataclasses for `--help` and adding did-you-mean takes a few dozen lines here; `--help` imports only
`vlm2vec.config` (PyYAML), never torch, so it answers at once.

Subcommands are a table, name -> `Command(help, "module:function", takes_config)`, imported only when
run. A `takes_config` command gets the resolved `Config` (this module handles `--config`,
overrides, `--help`, `--print-config`); any other gets its raw arguments. To add one, add an entry.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NamedTuple

from .errors import USER_ERROR_EXIT, UserError, user_message

DEBUG_ENV = "VLM2VEC_DEBUG"


class Command(NamedTuple):
    help: str
    target: str  # "module:function", imported when the command runs
    takes_config: bool = True
    #: also pass `explicit=` (the keys the YAML file or a flag set): a saved model folder's own
    #: settings yield only to those
    explicit: bool = False


COMMANDS: dict[str, Command] = {
    "train": Command(
        "train (or resume) an embedding model; see docs/training.md", "vlm2vec.training.entry:run"
    ),
    "eval": Command(
        "evaluate a model on MMEB; see docs/evaluation.md", "vlm2vec.evaluation:run_evaluation", explicit=True
    ),
    "compare": Command(
        "per-dataset deltas of two or more eval result folders (md, csv, chart); see docs/evaluation.md",
        "vlm2vec.evaluation.compare:main",
        takes_config=False,
    ),
    "embed": Command(
        "embed a corpus (training targets, an image folder, texts) into vector shards; see docs/hard_negatives.md",
        "vlm2vec.corpus.embed:run_embed",
        explicit=True,
    ),
    "mine": Command(
        "mine hard negatives for the training queries into MMEB-train files; see docs/hard_negatives.md",
        "vlm2vec.corpus.mine:run_mine",
        explicit=True,
    ),
}

_CONFIG_OPTIONS = [
    ("--config FILE", "YAML config file (sections model, data, train, eval)"),
    ("--section.key=VALUE", "override one key; VALUE is YAML (1e-5, true, null, [a, b], {A: 2})"),
    ("--print-config", "print the resolved config as YAML and exit"),
    ("--debug", f"show the traceback of expected errors (or {DEBUG_ENV}=1)"),
    ("-h, --help", "show this help and exit"),
]
_TRAIN_OPTIONS = [
    ("--resume", "continue from the newest complete checkpoint (none: an error)"),
    ("--resume-if-present", "resume when a complete checkpoint exists, else start (SLURM, requeue)"),
    ("--allow-changed=KEYS", "comma-separated run-defining keys that may differ from the checkpoint's"),
]


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")


def run_command(fn: Callable[[], Any], *, debug: bool | None = None) -> int:
    """Run `fn`; an expected error (`UserError`, also one raised in a DataLoader worker) prints
    `error: <message>` as one line on stderr and returns 2 (with `debug`, after its traceback).
    Anything else is a bug and propagates with its traceback. Returns `fn`'s int result or 0."""
    debug = debug_enabled() if debug is None else debug
    try:
        result = fn()
    except UserError as exc:
        if debug:
            traceback.print_exc()
        sys.stdout.flush()
        print(f"error: {user_message(exc)}", file=sys.stderr, flush=True)
        return USER_ERROR_EXIT
    return result if isinstance(result, int) else 0


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
    from .config import describe_fields

    options = list(extra) + _CONFIG_OPTIONS
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
    rows = describe_fields()
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


def _target(spec: str) -> Callable:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def run_config_command(name: str, argv: list[str], *, prog: str | None = None) -> int:
    """`--help` / `--print-config` / run: the path shared by `vlm2vec <name>` and train.py / evaluate.py."""
    from .config import dump_config, parse_cli

    command = COMMANDS[name]
    if "--help" in argv or "-h" in argv:
        extra = _TRAIN_OPTIONS if name == "train" else []
        sys.stdout.write(config_help(prog or f"vlm2vec {name}", command.help, extra))
        return 0
    if "--debug" in argv:
        os.environ[DEBUG_ENV] = "1"  # also seen by distributed ranks' error handling
    parsed = parse_cli(argv)
    if "--print-config" in parsed.flags:
        sys.stdout.write(dump_config(parsed.config))
        return 0
    fn = _target(command.target)
    if command.explicit:
        fn(parsed.config, explicit=parsed.explicit)
    else:
        fn(parsed.config)
    return 0


def _overview() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: vlm2vec <command> [--help] [arguments]", "", "commands:"]
    lines += [f"  {n:<{width}}  {c.help}" for n, c in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """`vlm2vec <command> ...`; returns the exit status (0, or 2 for an expected error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or None
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(_overview())
        return 0 if argv else USER_ERROR_EXIT
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        print(f"error: unknown command '{name}'; {hint}commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return USER_ERROR_EXIT
    command = COMMANDS[name]
    if command.takes_config:
        return run_command(lambda: run_config_command(name, rest, prog=prog), debug=debug)
    return run_command(lambda: _target(command.target)(rest), debug=debug)


__all__ = ["COMMANDS", "Command", "config_help", "main", "run_command", "run_config_command"]


if __name__ == "__main__":
    sys.exit(main())
