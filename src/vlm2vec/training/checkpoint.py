"""Atomic training checkpoints: weights (or only the trainable ones), optimizer, scheduler, RNG, data position.

Layout: `<output_dir>/checkpoints/step-00000100/` holding what `accelerate.Accelerator.save_state`
writes (model or DeepSpeed engine shards, optimizer, scheduler, one RNG file per process) plus
`trainer_state.json` (step, data order fingerprint, counters). Every rank writes into
`.tmp-step-.../` first; when all are done the main process writes `trainer_state.json` and renames
the folder, so a `step-*` folder is always complete and a kill at any moment leaves the previous
checkpoint as the latest. The folder must be on storage that every node sees (multi-node runs).

LoRA runs store only the trainable parameters (the adapters), not the frozen base: a few MB instead
of the whole model; full fine-tuning stores everything.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import DistributedType

from ..files import atomic_write_json, replace_dir

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoints_root(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints as (step, folder), oldest first."""
    root = checkpoints_root(output_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def _is_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def install_trainable_only_hook(accelerator: Accelerator) -> None:
    """Make `save_state` keep only parameters that require grad (LoRA adapters), not the frozen base.

    Loading then uses `strict=False` (see `load_checkpoint`); the frozen weights come from the base
    model folder, as at the start of the run.
    """

    def keep_trainable(models: list, weights: list[dict], _output_dir: str) -> None:
        for i, model in enumerate(models):
            names = {n for n, p in model.named_parameters() if p.requires_grad}
            weights[i] = {k: v for k, v in weights[i].items() if k in names}

    accelerator.register_save_state_pre_hook(keep_trainable)


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: str | os.PathLike,
    step: int,
    state: dict[str, Any],
    *,
    keep_last: int = 0,
    trainable_only: bool = False,
) -> Path:
    """Collective: every rank must call it. Returns the final folder; prunes to the newest `keep_last`
    checkpoints (0 keeps all)."""
    root = checkpoints_root(output_dir)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    kwargs = {"exclude_frozen_parameters": trainable_only} if _is_deepspeed(accelerator) else {}
    accelerator.save_state(str(tmp), **kwargs)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(tmp / STATE_FILE, {**state, "step": step})
        # the same step saved again (e.g. the final step after a resume) replaces the old folder
        replace_dir(tmp, final, old=root / f".old-step-{step:08d}")
        if keep_last > 0:
            for _, path in list_checkpoints(output_dir)[:-keep_last]:
                shutil.rmtree(path, ignore_errors=True)
        logger.info("saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(
    accelerator: Accelerator, path: str | os.PathLike, *, trainable_only: bool = False
) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG from `path` (collective); returns its trainer state."""
    path = Path(path)
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {STATE_FILE})")
    if _is_deepspeed(accelerator):
        kwargs: dict[str, Any] = {"load_module_strict": not trainable_only}
    else:
        kwargs = {"strict": not trainable_only}
    accelerator.load_state(str(path), **kwargs)
    return json.loads(state_file.read_text())


def remove_stale_temporaries(output_dir: str | os.PathLike) -> None:
    """Tidy what a killed save left behind (main process only): delete `.tmp-*` folders; put back an
    `.old-*` folder whose replacement never arrived, delete it otherwise."""
    root = checkpoints_root(output_dir)
    if not root.is_dir():
        return
    for path in root.iterdir():
        if path.name.startswith(".tmp-step-"):
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith(".old-step-"):
            final = root / path.name[len(".old-") :]
            if final.exists():
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.replace(path, final)
