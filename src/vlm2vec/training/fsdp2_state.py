"""A run under FSDP2: the sharded model with its optimizer and schedule, and their sharded checkpoints.

The model is sharded before the optimizer is built, so AdamW holds the shards (and only their
states). The Accelerator never sees the model or the optimizer: it would wrap the model in DDP and
save rank 0's optimizer shard as if it were the whole. It keeps the schedule and the RNG states;
model and optimizer shards go through `torch.distributed.checkpoint` into `fsdp2_state/` of the same
checkpoint folder, from hooks on accelerate's `save_state` / `load_state`, so the atomic save,
`readable_checkpoint` and the resume contract of `training/checkpoint.py` hold unchanged. A LoRA run
stores only the trainable parameters (the frozen base comes from the model folder, as at the start).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.distributed.checkpoint as dcp
from accelerate import Accelerator
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from ..config import Config
from .fsdp2 import shard_model
from .optim import build_optimizer_and_scheduler

#: the sub-folder of a checkpoint that holds the model and optimizer shards
STATE_DIR = "fsdp2_state"


def prepare_fsdp2(cfg: Config, accelerator: Accelerator, model: nn.Module) -> tuple[nn.Module, Any, Any]:
    """Shard `model` (in place), build AdamW over its shards and the schedule, hook up checkpoints."""
    shard_model(model, cfg.train.mixed_precision)
    optimizer, scheduler = build_optimizer_and_scheduler(model, cfg.train, accelerator)
    scheduler = accelerator.prepare(scheduler)
    trainable_only = bool(getattr(model, "is_lora", False))
    install_state_hooks(accelerator, model, optimizer, trainable_only=trainable_only)
    return model, optimizer, scheduler


def install_state_hooks(
    accelerator: Accelerator, model: nn.Module, optimizer: Any, *, trainable_only: bool
) -> None:
    """Save and load the model's and optimizer's shards with every `save_state` / `load_state`
    (collective: every rank writes and reads its own shards)."""
    options = StateDictOptions(ignore_frozen_params=trainable_only, strict=not trainable_only)

    def current() -> dict[str, Any]:
        model_state, optimizer_state = get_state_dict(model, optimizer, options=options)
        return {"model": model_state, "optimizer": optimizer_state}

    def save(_models: list, _weights: list, output_dir: str) -> None:
        dcp.save(current(), checkpoint_id=Path(output_dir) / STATE_DIR)

    def load(_models: list, input_dir: str) -> None:
        state = current()
        dcp.load(state, checkpoint_id=Path(input_dir) / STATE_DIR)
        set_state_dict(
            model,
            optimizer,
            model_state_dict=state["model"],
            optim_state_dict=state["optimizer"],
            options=options,
        )

    accelerator.register_save_state_pre_hook(save)
    accelerator.register_load_state_pre_hook(load)
