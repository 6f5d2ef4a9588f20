"""A checkpoint written before a setting was added or renamed resumes as the same run, and only then."""

from __future__ import annotations

from pathlib import Path

import pytest

from training_setup import tiny_train_config
from vlm2vec.config import DataConfig
from vlm2vec.errors import ResumeError
from vlm2vec.training.older_runs import current_data_order, current_definition
from vlm2vec.training.resume import NOT_RUN_DEFINING, check_changes, run_definition


def _older(definition: dict, per_source_batches: bool) -> dict:
    """What the version before `data.sub_batch`, `train.engine` and `train.multi_positive` stored."""
    old = {
        k: v
        for k, v in definition.items()
        if k not in ("data.sub_batch", "train.engine", "train.multi_positive")
    }
    return {**old, "data.per_source_batches": per_source_batches}


@pytest.mark.parametrize(("sub_batch", "per_source_batches"), [("source", True), ("iid", False)])
def test_an_older_definition_is_the_same_run_under_the_renamed_key(
    tmp_path: Path, sub_batch, per_source_batches
):
    cfg = tiny_train_config(tmp_path, tmp_path, DataConfig(sub_batch=sub_batch))
    now = run_definition(cfg, 1)
    stored = current_definition(_older(now, per_source_batches), cfg, NOT_RUN_DEFINING)
    assert check_changes(stored, now, set(), tmp_path) == {}


def test_an_older_definition_with_the_other_batching_is_refused(tmp_path: Path):
    cfg = tiny_train_config(tmp_path, tmp_path, DataConfig(sub_batch="source"))
    now = run_definition(cfg, 1)
    stored = current_definition(_older(now, per_source_batches=False), cfg, NOT_RUN_DEFINING)
    with pytest.raises(ResumeError, match=r"data.sub_batch: 'iid' in the checkpoint, 'source' now"):
        check_changes(stored, now, set(), tmp_path)


def test_a_setting_added_since_counts_as_changed_when_not_at_its_default(tmp_path: Path):
    cfg = tiny_train_config(tmp_path, tmp_path, DataConfig(), multi_positive="all")
    now = run_definition(cfg, 1)
    stored = current_definition(_older(now, per_source_batches=False), cfg, NOT_RUN_DEFINING)
    with pytest.raises(ResumeError, match=r"train.multi_positive: 'sample' in the checkpoint, 'all' now"):
        check_changes(stored, now, set(), tmp_path)


@pytest.mark.parametrize(("whole_batch", "run_length"), [(True, 32), (False, 1)])
def test_an_older_data_order_reads_as_its_run_length(whole_batch, run_length):
    old = {
        "seed": 0,
        "sizes": {"a": 64},
        "weights": {"a": 1.0},
        "global_batch_size": 32,
        "steps_per_epoch": 2,
    }
    order = current_data_order({**old, "per_source_batches": whole_batch})
    assert order == {**old, "run_length": run_length, "weight_mode": "rows"}
