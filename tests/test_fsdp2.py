"""The FSDP2 engine's choices, checked in one process: how it is selected (train.engine or
configs/accelerate/fsdp2.yaml), what it refuses, its precision policy and the blocks it shards.
The two-process equivalence, checkpoints and export are in test_gradcache_distributed.py,
test_zero3_lockstep.py and test_train_distributed.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vlm2vec.config import ConfigError, TrainConfig
from vlm2vec.model import EmbeddingModel
from vlm2vec.testing import tiny_model_config
from vlm2vec.training.engine import fsdp2_requested
from vlm2vec.training.fsdp2 import block_classes, mixed_precision_policy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_launcher_env(monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    monkeypatch.delenv("FSDP_VERSION", raising=False)
    return monkeypatch


def test_fsdp2_is_requested_by_train_engine_or_by_the_accelerate_config(no_launcher_env):
    from accelerate.commands.config.config_args import load_config_from_file

    assert not fsdp2_requested(TrainConfig())
    assert fsdp2_requested(TrainConfig(engine="fsdp2"))
    launch = load_config_from_file(str(ROOT / "configs" / "accelerate" / "fsdp2.yaml"))
    assert launch.distributed_type.value == "FSDP"
    # what `accelerate launch` exports for an FSDP config (accelerate.utils.launch)
    no_launcher_env.setenv("ACCELERATE_USE_FSDP", "true")
    no_launcher_env.setenv("FSDP_VERSION", str(launch.fsdp_config["fsdp_version"]))
    assert fsdp2_requested(TrainConfig())
    no_launcher_env.setenv("FSDP_VERSION", "1")  # FSDP1 is not an engine of ours
    assert not fsdp2_requested(TrainConfig())


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"deepspeed_config": "configs/deepspeed/zero2.json"}, "train.deepspeed_config is set"),
        ({"mixed_precision": "fp16"}, "bf16 or no"),
    ],
)
def test_fsdp2_refuses_a_second_engine_and_fp16_naming_the_key(settings, message):
    cfg = TrainConfig(engine="fsdp2", **settings)
    with pytest.raises(ConfigError, match=message) as err:
        cfg.validate()
    assert err.value.key == "train.engine" and "\n" not in str(err.value)


def test_bf16_policy_computes_in_bf16_and_reduces_gradients_in_fp32():
    bf16 = mixed_precision_policy("bf16")
    assert bf16.param_dtype == torch.bfloat16 and bf16.reduce_dtype == torch.float32
    full = mixed_precision_policy("no")
    assert full.param_dtype is None and full.reduce_dtype is None  # the parameters' own dtype (fp32)


def test_every_backbone_has_language_and_vision_blocks_to_shard(tiny_backbone):
    """FSDP2 shards block by block: each tiny backbone names at least two block classes (the language
    model's decoder layer and a vision block), and each is a class of some module in the model."""
    backbone, folder = tiny_backbone
    model = EmbeddingModel.from_config(tiny_model_config(backbone, folder))
    blocks = block_classes(model)
    present = {type(m).__name__ for m in model.modules()}
    found = blocks & present
    assert len(found) >= 2, (blocks, backbone)
    assert any("Vision" in name or "CLIP" in name for name in found), found
