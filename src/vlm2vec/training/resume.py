"""The resume contract: what defines a run, how `--resume` checks it, and the run's history file.

`RunStart` is the whole "is this the same run?" decision, made once per start: fresh, from which
checkpoint, or not at all because the run is finished; it then restores the checkpoint, checks the
data order once the loader exists, and records the start in `config.yaml` and `history.jsonl`.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from ..atomic_files import atomic_write_text
from ..config import Config, ConfigError, save_config, to_dict
from ..errors import ResumeError
from .checkpoint import (
    list_checkpoints,
    load_checkpoint,
    newest_readable_checkpoint,
    remove_stale_temporaries,
)
from .older_runs import current_data_order, current_definition
from .optim import apply_changed_hyperparameters

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
        flag = ",".join([*sorted(allowed), *refused])  # the flag replaces the list: keep what was allowed
        raise ResumeError(
            f"--resume from {checkpoint}: the run differs from the checkpoint's ({listed}); use the "
            f"checkpoint's values, or pass --allow-changed={flag} to continue with the new ones"
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


def _saved_max_steps(output_dir: Path) -> int | None:
    """`train.max_steps` of the run that wrote `<output_dir>/config.yaml` (None: no readable record)."""
    import yaml

    try:
        saved = yaml.safe_load((output_dir / "config.yaml").read_text(encoding="utf-8")) or {}
        return int(saved["train"]["max_steps"])
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return None


def check_finished_length(
    cfg: Config, finished_at: int | None, allowed: set[str], *, can_continue: bool
) -> None:
    """A finished run asked for another `train.max_steps`: refused in one line unless the change is
    allowed and a checkpoint of its last step lets it go on (a finished run is never shortened)."""
    wanted, out = cfg.train.max_steps, cfg.train.output_dir
    if finished_at is None or wanted == finished_at:
        return
    if not ({"train.max_steps", "*"} & allowed):
        raise ResumeError(
            f"{out} holds a run finished at step {finished_at}, but train.max_steps={wanted}: pass "
            f"--allow-changed=train.max_steps to continue it to step {wanted}, or choose another train.output_dir"
        )
    if wanted < finished_at:
        raise ResumeError(
            f"{out} holds a run finished at step {finished_at}, past train.max_steps={wanted}: a finished "
            "run is not shortened; choose another train.output_dir"
        )
    if not can_continue:
        raise ResumeError(
            f"{out} holds a run finished at step {finished_at} with no checkpoint of that step to continue "
            f"from (train.save_every missed it): train to step {wanted} in another train.output_dir"
        )


@dataclass
class RunStart:
    """Where a run starts: fresh (`checkpoint` None), from `checkpoint` with the allowed `changes`, or
    not at all (`finished`). Built by `decide` before anything is loaded; the phases that need the
    model and the loader follow in this order: `restore`, `check_data_order`, `record`."""

    cfg: Config
    num_processes: int
    checkpoint: Path | None = None
    state: dict[str, Any] = field(default_factory=dict)  # the checkpoint's trainer state
    changes: dict[str, list[Any]] = field(default_factory=dict)
    finished: bool = False

    @classmethod
    def decide(cls, cfg: Config, accelerator: Accelerator) -> RunStart:
        """Tidy what an interrupted save left (main process), then decide, reading only, where the run
        starts. Refuses what cannot continue this run exactly."""
        if accelerator.is_main_process:
            remove_stale_temporaries(cfg.train.output_dir)  # what a kill during a save, prune or export left
        accelerator.wait_for_everyone()
        t, start = cfg.train, cls(cfg, accelerator.num_processes)
        out = Path(t.output_dir)
        final = out / "final"
        finished = final.is_dir()  # complete: exports are swapped in whole (leftovers were tidied)
        if not (t.resume or t.resume_if_present):
            if list_checkpoints(out):
                raise ConfigError(
                    f"{out} already holds checkpoints: pass --resume to continue, or choose another train.output_dir"
                )
            if finished:
                raise ConfigError(
                    f"{out} holds a finished run ({final}): choose another train.output_dir, or remove it"
                )
            return start
        allowed = allowed_keys(cfg, start.num_processes)
        checkpoint, state = newest_readable_checkpoint(out, start.num_processes)
        if checkpoint is None:
            if finished:
                check_finished_length(cfg, _saved_max_steps(out), allowed, can_continue=False)
                start.finished = True
                return start
            if t.resume_if_present and not t.resume:
                logger.info("--resume-if-present: no checkpoint in %s, starting the run", out)
                return start
            either = (
                "drop --resume: --resume-if-present alone"
                if t.resume_if_present
                else "use --resume-if-present, which"
            )
            raise ResumeError(
                f"--resume: {out} holds no complete checkpoint; start without --resume "
                f"(or {either} starts when there is nothing to resume)"
            )
        start.checkpoint, start.state = checkpoint, state
        step = int(state["step"])
        stored_max = (state.get("run") or {}).get("train.max_steps", t.max_steps)
        if finished:
            # final/ exists only once max_steps was reached; only a longer run from its last step goes on
            check_finished_length(cfg, stored_max, allowed, can_continue=step >= stored_max)
            if t.max_steps == stored_max:
                start.finished = True
                return start
        stored = current_definition(state.get("run"), cfg, NOT_RUN_DEFINING)
        start.changes = check_changes(stored, start.definition, allowed, checkpoint)
        if step > t.max_steps:
            raise ResumeError(f"{checkpoint} is at step {step}, past train.max_steps={t.max_steps}")
        if step == t.max_steps:
            logger.warning("%s is the last step, but final/ was never exported: exporting it now", checkpoint)
        return start

    @property
    def definition(self) -> dict[str, Any]:
        return run_definition(self.cfg, self.num_processes)

    @property
    def step(self) -> int:
        """The step the run continues from (0 for a fresh run)."""
        return int(self.state["step"]) if self.checkpoint is not None else 0

    @property
    def finished_step(self) -> int:
        """The last step of a finished run (as the checkpoint recorded it)."""
        stored = self.state.get("run") or {}
        return int(stored.get("train.max_steps", self.cfg.train.max_steps))

    def restore(
        self, accelerator: Accelerator, optimizer: Any, scheduler: Any, *, trainable_only: bool
    ) -> None:
        """Load the checkpoint into the prepared model, optimizer and schedule (collective), with the
        configured hyperparameters where a change was allowed. Nothing to do for a fresh run."""
        if self.checkpoint is None:
            return
        self.state = load_checkpoint(accelerator, self.checkpoint, trainable_only=trainable_only)
        if self.changes:
            apply_changed_hyperparameters(optimizer, scheduler, self.cfg.train)
        logger.info("resumed from %s at step %d", self.checkpoint, self.step)

    def check_data_order(self, data_order: dict[str, Any]) -> None:
        """Compare the sampler's fingerprint with the checkpoint's; a run whose settings changed (as
        allowed) may also change its data order."""
        if self.checkpoint is None:
            return
        data_now = {DATA_ORDER_KEY: json.loads(json.dumps(data_order))}
        stored_order = current_data_order(self.state.get("data"))
        stored = {DATA_ORDER_KEY: stored_order} if stored_order is not None else data_now
        allowed = allowed_keys(self.cfg, self.num_processes) | ({DATA_ORDER_KEY} if self.changes else set())
        self.changes = {**self.changes, **check_changes(stored, data_now, allowed, self.checkpoint)}

    def record(self) -> None:
        """Everything checked: write `config.yaml` (what runs from here on) and the start or resume event
        in `history.jsonl` (main process only)."""
        out = Path(self.cfg.train.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, out / "config.yaml")
        if self.checkpoint is None:
            append_history(out, {"event": "start", "step": 0})
            return
        event = {
            "event": "resume",
            "step": self.step,
            "checkpoint": str(self.checkpoint),
            "changed": self.changes,
        }
        append_history(out, event)

    def checkpoint_state(
        self, data_order: dict[str, Any], skipped_rows: int, loss: float | None
    ) -> dict[str, Any]:
        """What a checkpoint stores beside the weights so that a later `decide` can check the run."""
        return {"data": data_order, "run": self.definition, "skipped_rows": skipped_rows, "loss": loss}


__all__ = [
    "DATA_ORDER_KEY",
    "HISTORY_FILE",
    "NOT_RUN_DEFINING",
    "RunStart",
    "allowed_keys",
    "append_history",
    "check_changes",
    "check_finished_length",
    "run_definition",
]
