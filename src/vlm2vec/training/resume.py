"""The resume contract: what defines a run, how `--resume` checks it, and the run's history file.

A run is defined by its model, data sources and weights, seed, global batch, chunk sizes, loss,
optimiser, schedule and `max_steps` (`run_definition`). The definition is stored in every
checkpoint; on resume, any difference is a `ResumeError` that lists the keys, unless each changed key
is named in `train.allow_changed` (`--allow-changed=train.lr,...`, `*` for all): then the change is
logged and appended to `<output_dir>/history.jsonl`, which records every start and resume.
Settings that only say where and how often to save or report (output_dir, save_every, log_every,
report_to, num_workers, ...) are not part of the definition and may change freely.
"""

from __future__ import annotations

import difflib
import json
import logging
import time
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError, to_dict
from ..errors import ResumeError
from ..files import atomic_write_text

logger = logging.getLogger(__name__)

HISTORY_FILE = "history.jsonl"

#: keys of model/data/train that do not change what a step computes
NOT_RUN_DEFINING = frozenset(
    {
        "model.attn_implementation",
        "model.gradient_checkpointing",
        "data.num_workers",
        "train.output_dir",
        "train.per_device_batch_size",  # compared as train.global_batch_size
        "train.save_every",
        "train.keep_last",
        "train.save_merged",
        "train.log_every",
        "train.report_to",
        "train.run_name",
        "train.resume",
        "train.resume_if_present",
        "train.allow_changed",
        "train.deepspeed_config",
        "train.stop_at_step",
    }
)
#: compared after the data loader is built: the sampler's fingerprint of the data (sizes, weights, ...)
DATA_ORDER_KEY = "data.order"


def run_definition(cfg: Config, num_processes: int) -> dict[str, Any]:
    """Flat `section.key -> value` of everything that defines the run (JSON values)."""
    flat: dict[str, Any] = {}
    for section in ("model", "data", "train"):
        for key, value in to_dict(getattr(cfg, section)).items():
            if f"{section}.{key}" not in NOT_RUN_DEFINING:
                flat[f"{section}.{key}"] = value
    flat["train.global_batch_size"] = cfg.train.per_device_batch_size * num_processes
    return json.loads(json.dumps(flat))


def allowed_keys(cfg: Config, num_processes: int) -> set[str]:
    """`train.allow_changed`, checked: each must be a run-defining key (or `*`)."""
    valid = sorted([*run_definition(cfg, num_processes), DATA_ORDER_KEY])
    for key in cfg.train.allow_changed:
        if key != "*" and key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"train.allow_changed: '{key}' is not a run-defining key; {hint}valid: *, {', '.join(valid)}",
                key="train.allow_changed",
            )
    return set(cfg.train.allow_changed)


def check_changes(
    stored: dict[str, Any] | None, current: dict[str, Any], allowed: set[str], checkpoint: Path
) -> dict[str, list[Any]]:
    """Keys whose value differs, as {key: [checkpoint's, now]}; `ResumeError` if any is not allowed."""
    if stored is None:
        if "*" in allowed:
            return {}
        raise ResumeError(
            f"{checkpoint} records no run definition (written by an older version): pass "
            "--allow-changed='*' to resume without comparing the settings"
        )
    changes = {
        key: [stored.get(key), current.get(key)]
        for key in sorted(set(stored) | set(current))
        if stored.get(key) != current.get(key)
    }
    refused = [k for k in changes if k not in allowed and "*" not in allowed]
    if refused:
        listed = "; ".join(
            f"{k}: {changes[k][0]!r} in the checkpoint, {changes[k][1]!r} now" for k in refused
        )
        raise ResumeError(
            f"--resume from {checkpoint}: the run differs from the checkpoint's ({listed}); use the "
            f"checkpoint's values, or pass --allow-changed={','.join(refused)} to continue with the new ones"
        )
    for key, (old, new) in changes.items():
        logger.warning("resume: %s changed from %r to %r (allowed)", key, old, new)
    return changes


def append_history(output_dir: Path, event: dict[str, Any]) -> None:
    """Add one line to `<output_dir>/history.jsonl` (rewritten atomically)."""
    path = output_dir / HISTORY_FILE
    lines = path.read_text(encoding="utf-8") if path.is_file() else ""
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **event}
    atomic_write_text(path, lines + json.dumps(record) + "\n")


__all__ = [
    "DATA_ORDER_KEY",
    "HISTORY_FILE",
    "NOT_RUN_DEFINING",
    "allowed_keys",
    "append_history",
    "check_changes",
    "run_definition",
]
