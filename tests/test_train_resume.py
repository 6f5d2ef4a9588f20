"""Resume equality (fp32, CPU): N steps in one go == N/2 steps, a new process, `--resume` to N.

The run uses LoRA with dropout (the RNG must be restored), GradCache chunks (RNG replay), hard
negatives, false-negative masking, a DataLoader worker and crosses an epoch boundary (reshuffle).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from launching import run_train
from vlm2vec.config import Config, DataConfig, TrainConfig, save_config
from vlm2vec.testing import tiny_model_config
from vlm2vec.testing.synthetic import write_synthetic_mmeb_train

STEPS = 10


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_resume_gives_identical_weights_and_data_order(tmp_path, tiny_qwen_dir):
    subsets = {"ImageNet_1K": "classification", "MSCOCO_t2i": "retrieval_t2i"}
    data_dir = write_synthetic_mmeb_train(
        tmp_path / "mmeb", subsets=subsets, rows_per_subset=16, splits=["original"]
    )
    model = tiny_model_config("qwen2_vl", tiny_qwen_dir, lora=True, lora_r=4, lora_dropout=0.2)

    def config(name: str) -> Path:
        train = TrainConfig(
            output_dir=str(tmp_path / name),
            seed=3,
            per_device_batch_size=4,
            qry_chunk_size=2,
            tgt_chunk_size=2,
            max_steps=STEPS,
            lr=5e-3,
            scheduler="linear",
            warmup_steps=2,
            hard_negatives=True,
            mask_false_negatives=True,
            save_every=5,
            keep_last=2,
            report_to="none",
        )
        cfg = Config(model=model, data=DataConfig(mmeb_train_dir=str(data_dir), num_workers=1), train=train)
        return save_config(cfg, tmp_path / f"{name}.yaml")

    run_train("--config", str(config("whole")))
    resumed = config("resumed")
    run_train(
        "--config", str(resumed), f"--train.stop_at_step={STEPS // 2}"
    )  # the "kill": leaves with a checkpoint at step 5
    out = tmp_path / "resumed"
    assert not (out / "final").exists() and (out / "checkpoints" / "step-00000005").is_dir()
    run_train("--config", str(resumed), "--resume")

    whole, again = _metrics(tmp_path / "whole"), _metrics(out)
    assert [r["step"] for r in again] == list(range(1, STEPS + 1))  # the resumed log has no duplicates
    assert [r["data_hash"] for r in whole] == [r["data_hash"] for r in again]
    assert [r["loss"] for r in whole] == [r["loss"] for r in again]
    a = load_file(tmp_path / "whole" / "final" / "adapter_model.safetensors")
    b = load_file(out / "final" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and len(a) > 0
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and training did move the adapters (the equality is not trivially of untouched weights)
    assert any(float(v.abs().sum()) > 0 for k, v in a.items() if "lora_B" in k)
