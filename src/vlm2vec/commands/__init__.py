"""The `vlm2vec` command line as a table, name -> `Command(help, "module:function", takes_config)`,
one module per command, imported only when run (train.py and evaluate.py call the same `main`); a
`takes_config` command gets the resolved `Config` (this package handles `--config`, overrides,
`--help`, `--print-config`), any other its raw arguments, and every expected error ends as one line
with exit status 2. Our own parser rather than tyro, draccus or jsonargparse: the config already is
one set of typed dataclasses with a help on every field, read with YAML 1.2 values in files and flags
alike; a library would add a dependency, a second value syntax and errors without the YAML file:line,
while `--help` here walks the dataclasses in a few dozen lines and never imports torch.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Callable
from typing import NamedTuple

from ..errors import USER_ERROR_EXIT
from ..outputs.ownership import OVERWRITE_ENV
from .argv import ACTION_FLAGS, FLAG_OVERRIDES, ParsedCLI, parse_cli, split_cli
from .help import TRAIN_OPTIONS, config_help
from .running import DEBUG_ENV, debug_enabled, name_deepspeed_accelerator, run_command


class Command(NamedTuple):
    help: str
    target: str  # "module:function", imported when the command runs
    takes_config: bool = True
    #: also pass `explicit=` (the keys the YAML file or a flag set): a saved model folder's own
    #: settings yield only to those
    explicit: bool = False


COMMANDS: dict[str, Command] = {
    "train": Command(
        "train (or resume) an embedding model; see docs/training.md",
        "vlm2vec.commands.train:run",
        explicit=True,
    ),
    "eval": Command(
        "evaluate a model on MMEB; see docs/evaluation.md", "vlm2vec.commands.eval:run", explicit=True
    ),
    "compare": Command(
        "per-dataset deltas of two or more eval result folders (md, csv, chart); see docs/evaluation.md",
        "vlm2vec.commands.compare:run",
        takes_config=False,
    ),
    "data": Command(
        "list per MMEB-V2 task what data was found, what is missing and what to download (no model); "
        "see docs/evaluation.md",
        "vlm2vec.commands.data:run",
    ),
    "embed": Command(
        "embed a corpus (training targets, an image folder, texts) into vector shards; see docs/hard_negatives.md",
        "vlm2vec.commands.embed:run",
        explicit=True,
    ),
    "mine": Command(
        "mine hard negatives for the training queries into MMEB-train files; see docs/hard_negatives.md",
        "vlm2vec.commands.mine:run",
        explicit=True,
    ),
    "export": Command(
        "export a model for sentence-transformers or transformers/vLLM, with parity; see docs/export.md",
        "vlm2vec.commands.export:run",
        takes_config=False,
    ),
    "index": Command(
        "build a FAISS index (flat, IVF, HNSW) over embedded vectors, with its recall; see docs/search.md",
        "vlm2vec.commands.index:run",
    ),
    "search": Command(
        "top-k for query vectors, texts or images over an index or embedded vectors; see docs/search.md",
        "vlm2vec.commands.search:run",
        explicit=True,
    ),
}


def _target(spec: str) -> Callable:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def run_config_command(name: str, argv: list[str], *, prog: str | None = None) -> int:
    """`--help` / `--print-config` / run: the path shared by `vlm2vec <name>` and train.py / evaluate.py."""
    from ..config import dump_config

    command = COMMANDS[name]
    if "--help" in argv or "-h" in argv:
        extra = TRAIN_OPTIONS if name == "train" else []
        sys.stdout.write(config_help(prog or f"vlm2vec {name}", command.help, extra))
        return 0
    if "--debug" in argv:
        os.environ[DEBUG_ENV] = "1"  # also seen by distributed ranks' error handling
    parsed = parse_cli(argv)
    if "--print-config" in parsed.flags:
        sys.stdout.write(dump_config(parsed.config))
        return 0
    if "--overwrite" in parsed.flags:
        os.environ[OVERWRITE_ENV] = "1"  # read by every output claim of this command, on every rank
    name_deepspeed_accelerator()
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


__all__ = [
    "ACTION_FLAGS",
    "COMMANDS",
    "DEBUG_ENV",
    "FLAG_OVERRIDES",
    "Command",
    "ParsedCLI",
    "config_help",
    "debug_enabled",
    "main",
    "parse_cli",
    "run_command",
    "run_config_command",
    "split_cli",
]
