"""`python train.py --config configs/train/demo.yaml --model.backbone=<name>` learns on the synthetic data
for the backbones added after the demo's Qwen2-VL: the loss falls clearly, and clearly below chance
(ln(batch): what a model whose reps collapsed to one point gets). The tiny model and the data are
prepared here through `vlm2vec.testing`, then train.py runs on them, for 120 of the demo's 320 steps."""

from __future__ import annotations

import json
import math

import pytest

from launching import run_train
from vlm2vec.testing import MMEB_TRAIN_KINDS, make_tiny_checkpoint, write_synthetic_mmeb_train

SUBSETS = ["ImageNet_1K", "MSCOCO_i2t"]  # the demo config's subsets


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["qwen3_vl", "llava_next"])
def test_demo_config_learns_with_backbone(tmp_path, backbone):
    model_dir = make_tiny_checkpoint(backbone, tmp_path / "model")
    data_dir = write_synthetic_mmeb_train(
        tmp_path / "data", subsets={s: MMEB_TRAIN_KINDS[s] for s in SUBSETS}, rows_per_subset=256,
        splits=["original"], seed=0,
    )  # fmt: skip
    overrides = [
        f"--model.backbone={backbone}",
        f"--model.path={model_dir}",
        f"--data.mmeb_train_dir={data_dir}",
        "--eval.data_dir=",
        f"--train.output_dir={tmp_path / 'run'}",
        "--train.max_steps=120",
        "--train.save_every=0",
        "--train.log_every=5",
        "--train.report_to=none",
    ]
    if backbone == "llava_next":  # the paper's low-res setting: resizing to 1344 px costs ~1 s per 32 images
        overrides.append("--model.image_resolution=low")
    proc = run_train("--config", "configs/train/demo.yaml", *overrides, timeout=900, threads=2)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    losses = [json.loads(line)["loss"] for line in lines]
    assert len(losses) == 24
    first, last = losses[0], sum(losses[-3:]) / 3
    chance = math.log(32)  # the demo's per_device_batch_size
    assert last < 0.5 * first and last < 0.75 * chance, f"loss did not fall clearly: {losses}"
