"""AdamW over the trainable parameters and learning-rate schedules with linear warm-up.

A DeepSpeed config with an `optimizer` section builds the optimizer itself; our schedule then wraps it
(accelerate's `DummyOptim` / `DummyScheduler`). A resume with allowed hyperparameter changes puts the
configured values back into the restored optimizer and schedule (`apply_changed_hyperparameters`).

Weight decay is not applied to biases and norm weights (1-D tensors), the usual choice for
transformers; LoRA matrices are 2-D and do get it. Shapes and sizes are the parameters' real ones
also under DeepSpeed ZeRO-3, whose partitioned parameters are 1-D (or empty) stand-ins that carry the
real shape as `ds_shape`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from ..config import TrainConfig, choices_of


def real_shape(param: torch.Tensor) -> torch.Size:
    """The parameter's full shape, also when ZeRO-3 has partitioned it (`ds_shape`)."""
    return torch.Size(getattr(param, "ds_shape", param.shape))


def real_numel(param: torch.Tensor) -> int:
    """The parameter's full element count, also when ZeRO-3 has partitioned it (`ds_numel`)."""
    return int(getattr(param, "ds_numel", param.numel()))


def decay_names(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the trainable parameters with weight decay (>= 2-D) and without (biases, norms)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if len(real_shape(param)) >= 2 else no_decay).append(name)
    return decay, no_decay


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into decayed (>= 2-D) and not decayed (biases, norms); a group with
    no member is left out (DeepSpeed drops empty groups, and the schedule must see the same groups)."""
    decay, no_decay = decay_names(model)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters (LoRA not applied and everything frozen?)")
    params = dict(model.named_parameters())
    groups = [  # "decay" says which group is which even when only one is left (resume re-applies wd)
        {"params": [params[n] for n in names], "weight_decay": wd, "decay": wd_on}
        for names, wd, wd_on in ((decay, weight_decay, True), (no_decay, 0.0, False))
        if names
    ]
    return groups


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) element counts, by real sizes under ZeRO-3 too."""
    params = list(model.parameters())
    return sum(real_numel(p) for p in params if p.requires_grad), sum(real_numel(p) for p in params)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_eps,
    )


def lr_lambda(schedule: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak lr at step `s`: linear warm-up from 0, then linear/cosine decay to 0 or flat."""
    schedules = choices_of(TrainConfig, "scheduler")
    if schedule not in schedules:
        raise ValueError(f"train.scheduler must be one of {schedules}, got {schedule!r}")
    if warmup_steps < 0 or total_steps <= 0:
        raise ValueError(f"need warmup_steps >= 0 and max_steps > 0, got {warmup_steps} and {total_steps}")

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> LambdaLR:
    return LambdaLR(optimizer, lr_lambda(cfg.scheduler, cfg.warmup_steps, cfg.max_steps))


def build_optimizer_and_scheduler(model: nn.Module, cfg: TrainConfig, accelerator: Any) -> tuple[Any, Any]:
    """AdamW and its schedule, or accelerate's stand-ins when the DeepSpeed config builds the optimizer."""
    plugin = accelerator.state.deepspeed_plugin
    ds_config = plugin.deepspeed_config if plugin else {}
    if "optimizer" in ds_config:  # DeepSpeed builds the optimizer; our schedule wraps it after prepare
        from accelerate.utils import DummyOptim, DummyScheduler  # exported only when deepspeed is installed

        optimizer = DummyOptim(
            param_groups(model, cfg.weight_decay), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        multiplier = lr_lambda(cfg.scheduler, cfg.warmup_steps, cfg.max_steps)
        scheduler = DummyScheduler(
            optimizer,
            total_num_steps=cfg.max_steps,
            warmup_num_steps=cfg.warmup_steps,
            lr_scheduler_callable=lambda opt: LambdaLR(opt, multiplier),
        )
        return optimizer, scheduler
    optimizer = build_optimizer(model, cfg)
    return optimizer, build_scheduler(optimizer, cfg)


def apply_changed_hyperparameters(optimizer: Any, scheduler: Any, cfg: TrainConfig) -> None:
    """A resumed optimizer and schedule carry the checkpoint's lr, weight decay and betas; after an
    allowed change, put the configured ones in (the schedule's multiplier is already the new one)."""
    inner = getattr(scheduler, "scheduler", scheduler)
    groups = optimizer.param_groups
    for i, group in enumerate(groups):
        group["initial_lr"] = cfg.lr
        group["betas"] = (cfg.adam_beta1, cfg.adam_beta2)
        group["eps"] = cfg.adam_eps
        if group.get("decay", i == 0 and len(groups) == 2):  # param_groups() marks the decayed group
            group["weight_decay"] = cfg.weight_decay
    if hasattr(inner, "base_lrs"):
        inner.base_lrs = [cfg.lr] * len(groups)
        for group, fn in zip(groups, inner.lr_lambdas):
            group["lr"] = cfg.lr * fn(inner.last_epoch)
        inner._last_lr = [g["lr"] for g in groups]


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]
