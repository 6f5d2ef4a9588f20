"""The metrics line says how many in-batch candidates false-negative masking removed per step."""

from __future__ import annotations

import json

import torch

from vlm2vec.training.logging import MetricsLogger
from vlm2vec.training.progress import TrainingProgress


def _progress(tmp_path) -> TrainingProgress:
    return TrainingProgress(
        MetricsLogger(tmp_path, report_to="none"),
        start_step=0,
        stop_at=4,
        max_steps=4,
        log_every=2,
        global_batch=8,
        skipped_rows=0,
        device=torch.device("cpu"),
        epochs=lambda step: step / 10,
        enabled=True,
    )


def _lines(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]


def test_masked_negatives_are_the_mean_per_step_of_each_interval(tmp_path):
    progress = _progress(tmp_path)
    batch = {"rows": [("a", 0)], "skipped": []}
    for step, masked in zip(range(1, 5), [4, 6, 0, 3]):
        progress.step_done(step, 1.0, None, 1e-3, 0.0, [10, 0, 10, 0], batch, masked)
    progress.close()
    assert [line["masked_negatives"] for line in _lines(tmp_path)] == [5.0, 1.5]


def test_no_masked_negatives_field_without_masking(tmp_path):
    progress = _progress(tmp_path)
    for step in range(1, 3):
        progress.step_done(step, 1.0, None, 1e-3, 0.0, [10, 0, 10, 0], {"rows": [], "skipped": []})
    progress.close()
    assert "masked_negatives" not in _lines(tmp_path)[0]
