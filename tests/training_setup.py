"""What the in-process training tests share: a reset of accelerate's process-wide state (every `train`
builds an Accelerator) and the small config they train the tiny Qwen2-VL with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from accelerate.state import AcceleratorState

from vlm2vec.config import Config, DataConfig, TrainConfig
from vlm2vec.testing import tiny_model_config


def reset_accelerate() -> None:
    """Forget the accelerate state (and its partial state) a previous `train` in this process left."""
    AcceleratorState._reset_state(reset_partial_state=True)


def tiny_train_config(out: Path, model_dir: Path, data: DataConfig, **train_kw: Any) -> Config:
    """Four steps of batch 4 in chunks of 2 at lr 1e-3, seed 0, no reporting, on the tiny Qwen2-VL at
    `model_dir`; `train_kw` overrides or adds TrainConfig fields."""
    train_cfg: dict[str, Any] = dict(
        output_dir=str(out),
        per_device_batch_size=4,
        qry_chunk_size=2,
        tgt_chunk_size=2,
        max_steps=4,
        lr=1e-3,
        report_to="none",
        seed=0,
    )
    train_cfg.update(train_kw)
    return Config(model=tiny_model_config("qwen2_vl", model_dir), data=data, train=TrainConfig(**train_cfg))
