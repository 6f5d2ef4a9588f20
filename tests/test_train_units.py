"""Small parts of the trainer: schedules, parameter groups, DeepSpeed config filling, metrics files,
checkpoint discovery."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vlm2vec.config import Config, ConfigError, DataConfig, TrainConfig
from vlm2vec.training.checkpoint import (
    STATE_FILE,
    latest_checkpoint,
    list_checkpoints,
    remove_stale_temporaries,
)
from vlm2vec.training.engine import resolve_deepspeed_config
from vlm2vec.training.logging import MetricsLogger
from vlm2vec.training.loop import num_negatives
from vlm2vec.training.optim import lr_lambda, param_groups


def test_schedules_warm_up_linearly_then_decay_to_zero():
    lin = lr_lambda("linear", warmup_steps=4, total_steps=14)
    assert [round(lin(s), 3) for s in range(4)] == [0.2, 0.4, 0.6, 0.8]
    assert lin(4) == 1.0 and lin(9) == pytest.approx(0.5) and lin(14) == 0.0
    cos = lr_lambda("cosine", warmup_steps=0, total_steps=10)
    assert cos(0) == 1.0 and cos(5) == pytest.approx(0.5) and cos(10) == pytest.approx(0.0)
    assert lr_lambda("constant", 2, 10)(7) == 1.0
    with pytest.raises(ValueError, match="scheduler must be one of"):
        lr_lambda("step", 0, 10)


def test_param_groups_skip_decay_for_biases_and_norms_and_frozen_params():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    model[2].requires_grad_(False)
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and [p.shape for p in decay["params"]] == [torch.Size([4, 3])]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 3  # bias, norm weight, norm bias
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(model, 0.1)


def test_deepspeed_autos_are_filled_from_the_train_config():
    cfg = TrainConfig(per_device_batch_size=16, max_grad_norm=0.5, mixed_precision="bf16", lr=3e-5)
    source = {
        "zero_optimization": {"stage": 2},
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "optimizer": {"type": "AdamW", "params": {"lr": "auto", "torch_adam": True}},
    }
    out = resolve_deepspeed_config(source, cfg)
    assert out["train_micro_batch_size_per_gpu"] == 16 and out["gradient_accumulation_steps"] == 1
    assert (
        out["gradient_clipping"] == 0.5 and out["bf16"]["enabled"] is True and out["fp16"]["enabled"] is False
    )
    assert out["optimizer"]["params"]["lr"] == 3e-5 and out["optimizer"]["params"]["torch_adam"] is True
    assert source["train_micro_batch_size_per_gpu"] == "auto"  # the input is not modified


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scheduler": {"type": "WarmupLR"}}, "remove its 'scheduler' section"),
        ({"bf16": {"enabled": False}}, "bf16.enabled=False but train.mixed_precision='bf16'"),
        ({"train_micro_batch_size_per_gpu": 3}, "train_micro_batch_size_per_gpu=3"),
        ({"gradient_accumulation_steps": 4}, "gradient_accumulation_steps must be 1"),
        ({"gradient_clipping": 2.0}, r"gradient_clipping=2.0 but train.max_grad_norm=1.0"),
        ({"optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}}, r"optimizer.params.lr=0.001 but train.lr"),
        (
            {"optimizer": {"type": "AdamW", "params": {"betas": [0.9, 0.95]}}},
            r"optimizer.params.betas=\[0.9, 0.95\] but train.adam_beta1/adam_beta2",
        ),
    ],
)
def test_deepspeed_config_conflicts_are_refused(change, message):
    cfg = TrainConfig(per_device_batch_size=16, mixed_precision="bf16")
    with pytest.raises(ConfigError, match=message):
        resolve_deepspeed_config({"zero_optimization": {"stage": 2}, **change}, cfg)


def test_hard_negative_settings_must_agree():
    cfg = Config(data=DataConfig(num_hard_negatives=2), train=TrainConfig(hard_negatives=False))
    with pytest.raises(ConfigError, match="train.hard_negatives is false"):
        num_negatives(cfg)
    cfg.train.hard_negatives = True
    assert num_negatives(cfg) == 2
    assert num_negatives(Config(train=TrainConfig(hard_negatives=True))) == 1


def test_metrics_jsonl_always_written_and_cut_back_on_resume(tmp_path):
    log = MetricsLogger(tmp_path, report_to="none")
    for step in (1, 2, 3):
        log.log(step, {"loss": 1.0 / step, "grad_norm": None})
    log.close()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3] and lines[0]["loss"] == 1.0
    resumed = MetricsLogger(tmp_path, report_to="none", resume_step=2)  # the checkpoint was at step 2
    resumed.log(3, {"loss": 0.1})
    resumed.close()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in lines] == [(1, 1.0), (2, 0.5), (3, 0.1)]


def test_tensorboard_backend_writes_event_files(tmp_path):
    log = MetricsLogger(tmp_path, report_to="tensorboard")
    log.log(1, {"loss": 2.0})
    log.close()
    assert log.backend == "tensorboard" and list((tmp_path / "tensorboard").glob("events.*"))
    assert not MetricsLogger(tmp_path / "other", enabled=False).enabled  # non-main ranks write nothing
    assert not (tmp_path / "other").exists()


def test_only_complete_checkpoints_count_and_stale_saves_are_tidied(tmp_path):
    root = tmp_path / "checkpoints"
    for step, complete in ((2, True), (4, True), (6, False)):
        folder = root / f"step-{step:08d}"
        folder.mkdir(parents=True)
        if complete:
            (folder / STATE_FILE).write_text(json.dumps({"step": step}))
    (root / ".tmp-step-00000008").mkdir()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 4]
    assert latest_checkpoint(tmp_path).name == "step-00000004"
    # a save of step 4 killed between moving the old folder aside and putting the new one in place
    (root / "step-00000004").rename(root / ".old-step-00000004")
    remove_stale_temporaries(tmp_path)
    assert not (root / ".tmp-step-00000008").exists()
    assert latest_checkpoint(tmp_path).name == "step-00000004"
    assert math.isfinite(json.loads((root / "step-00000004" / STATE_FILE).read_text())["step"])


def test_wandb_offline_is_used_when_configured(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    log = MetricsLogger(tmp_path, report_to="auto", run_name="unit", config={"train": {"lr": 1.0}})
    log.log(1, {"loss": 2.0, "data_hash": "abc"})
    log.close()
    assert log.backend == "wandb"
    assert list((tmp_path / "wandb").glob("offline-run-*"))
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["loss"] == 2.0
