"""`python train.py --config configs/train/demo.yaml` on CPU learns: the loss falls clearly and the
trained model's Precision@1 on held-out synthetic data is far above chance (10 candidates: 10%)."""

from __future__ import annotations

import json

import pytest

from launching import ROOT, launch, run_train
from vlm2vec.config import EvalConfig
from vlm2vec.evaluation import evaluate_model
from vlm2vec.model import EmbeddingModel

CHANCE = 10.0


@pytest.mark.slow
def test_demo_config_learns_far_above_chance(tmp_path):
    # the demo config as shipped, with its .demo/ paths moved into tmp_path (assets: prepare_demo.py)
    overrides = [
        f"--model.path={tmp_path / 'tiny-qwen2vl'}",
        f"--data.mmeb_train_dir={tmp_path / 'mmeb-train'}",
        f"--eval.data_dir={tmp_path / 'mmeb-eval'}",
        f"--train.output_dir={tmp_path / 'run'}",
        "--train.report_to=none",
    ]
    prepare = ("--config", "configs/train/demo.yaml", *overrides)
    proc = launch(ROOT / "scripts" / "prepare_demo.py", *prepare, timeout=600, threads=2)
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc = run_train("--config", "configs/train/demo.yaml", *overrides, timeout=1200, threads=2)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "model saved to" in proc.stdout

    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records]
    for r in records:  # the step's real tokens as GradCache counts them = the collator's count
        assert r["padded_tokens"] >= 0 and r["tokens"] == pytest.approx(r["tokens_per_s"] * r["step_time"])
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.5 * first, f"loss did not fall clearly: {losses}"

    model = EmbeddingModel.from_pretrained(tmp_path / "run" / "final")
    eval_cfg = EvalConfig(
        data_dir=str(tmp_path / "mmeb-eval"),
        datasets=["ImageNet-1K", "MSCOCO_i2t"],
        output_dir=str(tmp_path / "eval"),
        batch_size=64,
    )
    summary = evaluate_model(model, eval_cfg)
    p_at_1 = {name: result["precision@1"] for name, result in summary["datasets"].items()}
    assert set(p_at_1) == {"ImageNet-1K", "MSCOCO_i2t"}
    assert all(value >= 3 * CHANCE for value in p_at_1.values()), p_at_1
