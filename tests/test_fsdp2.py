"""The FSDP2 engine's choices, checked in one process: how it is selected (train.engine or
configs/accelerate/fsdp2.yaml), what it refuses, its precision policy and the blocks it shards.
The two-process equivalence, checkpoints and export are in test_gradcache_distributed.py,
test_zero3_lockstep.py and test_train_distributed.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from launching import launch
from vlm2vec.config import ConfigError, TrainConfig
from vlm2vec.model import EmbeddingModel
from vlm2vec.testing import tiny_model_config
from vlm2vec.training.engine import fsdp2_requested
from vlm2vec.training.fsdp2 import block_classes, mixed_precision_policy

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "dist_scripts"


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


@pytest.mark.slow
def test_export_gather_gives_rank_0_every_full_weight_once_tied_weights_included(tmp_path):
    """tests/dist_scripts/fsdp2_tied_worker.py on 2 processes: inside `full_parameters` rank 0 sees the
    weights before sharding as plain tensors under every key (the shared embedding / head weight as one
    parameter); afterwards both ranks hold shards again."""
    out = tmp_path / "result"
    launch(SCRIPTS / "fsdp2_tied_worker.py", "--out", str(out), nproc=2)
    ranks = [torch.load(f"{out}.rank{r}", weights_only=False) for r in range(2)]
    zero = ranks[0]
    assert zero["units"] == 3  # two blocks and the root
    assert zero["plain"] and zero["tied"]
    assert zero["state"].keys() == zero["before"].keys() and "head.weight" in zero["state"]
    assert all(torch.equal(zero["state"][k], v) for k, v in zero["before"].items())
    assert all(r["sharded_after"] for r in ranks)
