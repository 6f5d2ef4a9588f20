"""The `accelerate.Accelerator` for a run: one process, DDP (CUDA or gloo on CPU), DeepSpeed or FSDP2.

DeepSpeed comes either from `train.deepspeed_config` (a JSON file) or from `accelerate launch
--use_deepspeed --deepspeed_config_file ...`. Either way the `"auto"` values that depend on our
config are filled here: micro batch = `train.per_device_batch_size` (GradCache makes one optimizer
step per global batch, so no gradient accumulation), gradient clipping = `train.max_grad_norm`,
bf16/fp16 from `train.mixed_precision`. The optimizer and schedule are ours (AdamW + warm-up
schedule): a config's `scheduler` section is refused; an `optimizer` section is honoured through
accelerate's `DummyOptim`.

FSDP2 comes from `train.engine: fsdp2` or from `accelerate launch --config_file
configs/accelerate/fsdp2.yaml` (`fsdp_version: 2`). Its Accelerator is a plain multi-process one
(no FSDP plugin: `training/fsdp2.py` says why) without autocast; `training/fsdp2_state.py` shards the
model and keeps the model and optimizer out of the Accelerator.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import torch
from accelerate import Accelerator, DeepSpeedPlugin
from accelerate.utils import DistributedType, InitProcessGroupKwargs

from ..config import Config, ConfigError, TrainConfig
from ..errors import import_extra


def _fill(config: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `value` at `a.b.c` where the config says "auto" or nothing; keep explicit values."""
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    if node.get(leaf, "auto") == "auto":
        node[leaf] = value


def resolve_deepspeed_config(
    config: dict[str, Any] | str, cfg: TrainConfig, where: str = "deepspeed config"
) -> dict:
    """Our values for the "auto" entries of a DeepSpeed config; conflicts raise `ConfigError`."""
    if isinstance(config, str):
        try:
            with open(config, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"train.deepspeed_config: cannot read {config}: {exc}") from None
    config = json.loads(json.dumps(config))  # deep copy
    if "scheduler" in config:
        raise ConfigError(
            f"{where}: remove its 'scheduler' section; the schedule is train.scheduler/warmup_steps"
        )
    gas = config.get("gradient_accumulation_steps", "auto")
    if gas not in ("auto", 1):
        raise ConfigError(
            f"{where}: gradient_accumulation_steps must be 1 or auto (GradCache replaces accumulation)"
        )
    config["gradient_accumulation_steps"] = 1
    _fill(config, "train_micro_batch_size_per_gpu", cfg.per_device_batch_size)
    micro = config["train_micro_batch_size_per_gpu"]
    if micro != cfg.per_device_batch_size:
        raise ConfigError(
            f"{where}: train_micro_batch_size_per_gpu={micro} but train.per_device_batch_size={cfg.per_device_batch_size}"
        )
    _fill(config, "gradient_clipping", float(cfg.max_grad_norm or 0.0))
    if float(config["gradient_clipping"]) != float(cfg.max_grad_norm or 0.0):
        raise ConfigError(  # DeepSpeed clips, not our loop: a different value would silently win
            f"{where}: gradient_clipping={config['gradient_clipping']} but train.max_grad_norm={cfg.max_grad_norm}"
        )
    for kind in ("bf16", "fp16"):
        wanted = cfg.mixed_precision == kind
        _fill(config, f"{kind}.enabled", wanted)
        if bool(config[kind]["enabled"]) != wanted:
            raise ConfigError(
                f"{where}: {kind}.enabled={config[kind]['enabled']} but train.mixed_precision={cfg.mixed_precision!r}"
            )
    if "optimizer" in config:
        params = {
            "lr": cfg.lr,
            "betas": [cfg.adam_beta1, cfg.adam_beta2],
            "eps": cfg.adam_eps,
            "weight_decay": cfg.weight_decay,
        }
        for key, value in params.items():
            _fill(config, f"optimizer.params.{key}", value)
            given = config["optimizer"]["params"][key]
            if json.loads(json.dumps(given)) != json.loads(json.dumps(value)):
                name = (
                    "train.adam_beta1/adam_beta2"
                    if key == "betas"
                    else f"train.{'adam_eps' if key == 'eps' else key}"
                )
                raise ConfigError(f"{where}: optimizer.params.{key}={given} but {name}={value}")
    return config


def deepspeed_requested(cfg: TrainConfig) -> bool:
    return bool(cfg.deepspeed_config) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def fsdp2_requested(cfg: TrainConfig) -> bool:
    """`train.engine: fsdp2`, or an `accelerate launch` with an FSDP config of `fsdp_version: 2`."""
    launched = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    return cfg.engine == "fsdp2" or (launched and os.environ.get("FSDP_VERSION", "1") == "2")


@contextlib.contextmanager
def _without_accelerate_fsdp() -> Iterator[None]:
    """accelerate builds its own FSDP plugin when its launcher set ACCELERATE_USE_FSDP; ours shards."""
    saved = os.environ.pop("ACCELERATE_USE_FSDP", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["ACCELERATE_USE_FSDP"] = saved


def build_accelerator(cfg: Config) -> Accelerator:
    """An Accelerator matching the launch (plain, DDP, DeepSpeed, FSDP2) and the config."""
    t = cfg.train
    cuda = torch.cuda.is_available()
    if fsdp2_requested(t):
        if deepspeed_requested(t):
            raise ConfigError("train.engine: FSDP2 and DeepSpeed are both requested; pick one engine")
        with _without_accelerate_fsdp():
            return Accelerator(cpu=not cuda, mixed_precision="no", step_scheduler_with_optimizer=False)
    use_ds = deepspeed_requested(t)
    if use_ds:
        import_extra(
            "deepspeed", needed_for="DeepSpeed (train.deepspeed_config or accelerate --use_deepspeed)"
        )
    plugin = (
        DeepSpeedPlugin(hf_ds_config=resolve_deepspeed_config(t.deepspeed_config, t))
        if t.deepspeed_config
        else None
    )
    # No find_unused_parameters: the backbones keep every trainable parameter in the graph of every
    # chunk (a text-only chunk runs the vision path on a dummy image, its features times zero joining
    # the input embeddings), so gradients also become ready in the same order on every rank (ZeRO-2/3).
    handlers: list[Any] = []
    if use_ds and not cuda:
        # accelerate drops DeepSpeed under cpu=True; gloo + a default Accelerator works
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
        import deepspeed.ops

        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # avoid a 20-55 s op build
    accelerator = Accelerator(
        cpu=not cuda and not use_ds,
        mixed_precision=t.mixed_precision,
        deepspeed_plugin=plugin,
        kwargs_handlers=handlers,
        step_scheduler_with_optimizer=False,  # one scheduler step per global step, whatever the world size
    )
    if accelerator.distributed_type == DistributedType.DEEPSPEED and plugin is None:
        # launched with `accelerate launch --use_deepspeed`: fill its config in place before prepare()
        ds = accelerator.state.deepspeed_plugin
        resolved = resolve_deepspeed_config(ds.deepspeed_config, t, where="accelerate's deepspeed config")
        ds.deepspeed_config.clear()
        ds.deepspeed_config.update(resolved)
    return accelerator


def deepspeed_float_dtype(accelerator: Accelerator) -> torch.dtype | None:
    """The dtype DeepSpeed runs the model in (inputs must be cast by hand), or None outside DeepSpeed."""
    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return None
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    if config.get("bf16", {}).get("enabled"):
        return torch.bfloat16
    if config.get("fp16", {}).get("enabled"):
        return torch.float16
    return None


def zero_stage(accelerator: Accelerator) -> int:
    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return 0
    return int(
        accelerator.state.deepspeed_plugin.deepspeed_config.get("zero_optimization", {}).get("stage", 0)
    )
