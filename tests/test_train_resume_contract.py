"""The resume contract: a resumed run is the same run (or each difference was allowed, logged and
recorded), a broken newest checkpoint falls back to the previous one, missing RNG state is an error,
a finished run says so; and the durability of checkpoints (fsync before the completion marker,
leftovers of interrupted saves, prunes and exports tidied at start). In-process, one tiny model."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from training_setup import reset_accelerate, tiny_train_config
from vlm2vec.commands.train import run
from vlm2vec.config import Config, DataConfig
from vlm2vec.errors import CheckpointError, ResumeError
from vlm2vec.testing.synthetic import write_synthetic_mmeb_train
from vlm2vec.training import checkpoint as ckpt_module
from vlm2vec.training import train
from vlm2vec.training.checkpoint import (
    STATE_FILE,
    list_checkpoints,
    readable_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from vlm2vec.training.logging import MetricsLogger
from vlm2vec.training.resume import HISTORY_FILE

pytestmark = pytest.mark.usefixtures("fresh_accelerate")


def _config(out: Path, model_dir: Path, data_dir: Path, **train_kw) -> Config:
    """The shared tiny config, checkpointing every step (the last two kept) at a constant lr."""
    train_kw = dict(scheduler="constant", save_every=1, keep_last=2) | train_kw
    return tiny_train_config(out, model_dir, DataConfig(mmeb_train_dir=str(data_dir)), **train_kw)


@pytest.fixture(scope="module")
def half_run(tmp_path_factory, tiny_qwen_dir) -> tuple[Path, Config]:
    """A run stopped after step 2 of 4 (checkpoints at steps 1 and 2), started with --resume-if-present
    on an empty folder."""
    reset_accelerate()
    root = tmp_path_factory.mktemp("half")
    subsets = {"ImageNet_1K": "classification", "MSCOCO_t2i": "retrieval_t2i"}
    data_dir = write_synthetic_mmeb_train(root / "mmeb", subsets=subsets, rows_per_subset=12)
    cfg = _config(root / "run", tiny_qwen_dir, data_dir, stop_at_step=2, resume_if_present=True)
    result = train(cfg)
    assert result.step == 2 and [s for s, _ in list_checkpoints(cfg.train.output_dir)] == [1, 2]
    history = _history(root / "run")
    assert [h["event"] for h in history] == ["start"]
    return root / "run", cfg


def _history(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / HISTORY_FILE).read_text().splitlines()]


def _copy(half_run, tmp_path: Path, **train_kw) -> tuple[Path, Config]:
    src, cfg = half_run
    out = tmp_path / "run"
    shutil.copytree(src, out)
    train_cfg = dataclasses.replace(cfg.train, output_dir=str(out), resume=True, resume_if_present=False)
    train_cfg = dataclasses.replace(train_cfg, **{"stop_at_step": None, **train_kw})
    return out, dataclasses.replace(cfg, train=train_cfg)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"train": {"lr": 2e-3}}, "train.lr"),
        ({"train": {"seed": 1}}, "train.seed"),
        ({"train": {"per_device_batch_size": 2}}, "train.global_batch_size"),
        ({"train": {"max_steps": 6}}, "train.max_steps"),
        ({"train": {"scheduler": "cosine"}}, "train.scheduler"),
        ({"train": {"qry_chunk_size": 1}}, "train.qry_chunk_size"),
        ({"model": {"temperature": 0.05}}, "model.temperature"),
        ({"data": {"subset_weights": {"ImageNet_1K": 2.0}}}, "data.subset_weights"),
        # keys added after the contract: every model/data/train key defines the run unless listed
        ({"train": {"qry_chunk_tokens": 64}}, "train.qry_chunk_tokens"),
        ({"train": {"hardness_alpha": 9.0}}, "train.hardness_alpha"),
        ({"train": {"matryoshka_dims": [8]}}, "train.matryoshka_dims"),
        ({"model": {"max_length": 16}}, "model.max_length"),
    ],
)
def test_each_changed_run_setting_is_a_resume_error(half_run, tmp_path, change, key):
    out, cfg = _copy(half_run, tmp_path)
    for section, values in change.items():
        setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **values))
    before = (out / "config.yaml").read_bytes()
    with pytest.raises(
        ResumeError, match=rf"differs from the checkpoint's \({key}: .*--allow-changed={key} to continue"
    ):
        train(cfg)
    assert (out / "config.yaml").read_bytes() == before  # config.yaml never records what did not run
    assert len(_history(out)) == 1


def test_allowed_change_resumes_logs_and_records_it_and_startup_tidies_leftovers(half_run, tmp_path, caplog):
    out, cfg = _copy(half_run, tmp_path, lr=3e-3, allow_changed=["train.lr"], save_every=0)
    # what kills during a prune, a save and a final export leave behind
    pruned = out / "checkpoints" / ".prune-step-00000000"
    pruned.mkdir()
    (pruned / STATE_FILE).write_text('{"step": 0}')
    (out / "checkpoints" / ".tmp-step-00000003").mkdir()
    (out / ".final.x1y2z3").mkdir()
    with caplog.at_level(logging.WARNING):
        result = train(cfg)
    assert result.step == 4 and (out / "final").is_dir()
    assert not pruned.exists() and not (out / "checkpoints" / ".tmp-step-00000003").exists()
    assert not (out / ".final.x1y2z3").exists()
    assert "train.lr changed from 0.001 to 0.003 (allowed)" in caplog.text
    event = _history(out)[-1]
    assert (
        event["event"] == "resume" and event["step"] == 2 and event["changed"] == {"train.lr": [1e-3, 3e-3]}
    )
    assert "lr: 0.003" in (out / "config.yaml").read_text()
    lrs = {r["step"]: r["lr"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    assert lrs[2] == pytest.approx(1e-3) and lrs[3] == pytest.approx(3e-3)  # the new lr did run

    reset_accelerate()
    again = run(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, save_every=1)))
    assert again.finished_before and again.step == 4


def test_finished_run_says_so_and_a_fresh_start_refuses_it(half_run, tmp_path, capsys):
    out, cfg = _copy(half_run, tmp_path)
    (out / "final").mkdir()
    result = run(cfg)
    assert result.finished_before
    assert "already finished" in capsys.readouterr().out
    shutil.rmtree(out / "checkpoints")
    reset_accelerate()
    fresh = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, resume=False))
    with pytest.raises(Exception, match="holds a finished run"):
        train(fresh)


def test_resume_with_nothing_complete_is_an_error(tmp_path, tiny_qwen_dir):
    out = tmp_path / "run"
    (out / "checkpoints" / ".tmp-step-00000002").mkdir(parents=True)
    cfg = _config(out, tiny_qwen_dir, tmp_path / "no-data", resume=True)
    with pytest.raises(ResumeError, match="holds no complete checkpoint.*--resume-if-present"):
        train(cfg)


def test_missing_rng_state_is_an_error(half_run, tmp_path):
    out, cfg = _copy(half_run, tmp_path)
    (out / "checkpoints" / "step-00000002" / "random_states_0.pkl").unlink()
    with pytest.raises(ResumeError, match=r"step-00000002/random_states_0\.pkl is missing"):
        train(cfg)


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.bin", "random_states_0.pkl", STATE_FILE])
def test_cut_checkpoint_files_are_named(half_run, tmp_path, name):
    out, _ = _copy(half_run, tmp_path)
    folder = out / "checkpoints" / "step-00000002"
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"step-00000002/{name}: unreadable"):
        readable_checkpoint(folder, 1)


def test_unreadable_newest_checkpoint_falls_back_to_the_previous_one(half_run, tmp_path, caplog):
    out, cfg = _copy(half_run, tmp_path, stop_at_step=2)
    weights = out / "checkpoints" / "step-00000002" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        result = train(cfg)
    assert "step-00000002/model.safetensors: unreadable" in caplog.text
    assert result.step == 2 and _history(out)[-1]["checkpoint"].endswith("step-00000001")


def test_checkpoint_files_are_flushed_to_disk_before_the_completion_marker(tmp_path, monkeypatch):
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    synced: list[str] = []
    real_fsync, real_write = os.fsync, ckpt_module.atomic_write_json

    def fsync(fd: int) -> None:
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    at_marker: dict[str, set[str]] = {}

    def write_json(path, data):
        path = Path(path)
        if path.name == STATE_FILE:
            at_marker["files"] = {str(p.resolve()) for p in path.parent.iterdir() if ".tmp-" not in p.name}
            at_marker["synced"] = set(synced)
        return real_write(path, data)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(ckpt_module, "atomic_write_json", write_json)
    final = save_checkpoint(accelerator, tmp_path, 1, {"loss": 1.0})
    names = {Path(p).name for p in at_marker["files"]}
    assert {"model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl"} <= names
    assert at_marker["files"] <= at_marker["synced"], "weights not on disk before the completion marker"
    assert (final / STATE_FILE).is_file() and readable_checkpoint(final, 1)["step"] == 1


def test_startup_tidy_restores_a_displaced_export_and_drops_partial_ones(tmp_path):
    (tmp_path / ".final.old").mkdir()
    (tmp_path / ".final.old" / "vlm2vec.json").write_text("{}")
    (tmp_path / ".final_merged.abc").mkdir()
    remove_stale_temporaries(tmp_path)
    assert (tmp_path / "final" / "vlm2vec.json").is_file() and not (tmp_path / ".final.old").exists()
    assert not (tmp_path / ".final_merged.abc").exists()


def test_tensorboard_and_wandb_continue_the_same_run_after_resume(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLogger(tmp_path, report_to="tensorboard")
    for step in (1, 2, 3):
        log.log(step, {"loss": float(step)})
    log.close()
    # event files are read in name order, and names start with the second they were opened in (a
    # resumed process is seconds later; in one process the counter after it would sort "10" < "9")
    time.sleep(1.1)
    log = MetricsLogger(tmp_path, report_to="tensorboard", resume_step=2)  # killed after step 3
    for step in (3, 4):
        log.log(step, {"loss": 10.0 + step})
    log.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = events.Scalars("train/loss")
    assert [(s.step, s.value) for s in scalars] == [(1, 1.0), (2, 2.0), (3, 13.0), (4, 14.0)]

    monkeypatch.setenv("WANDB_MODE", "offline")
    for resume_step in (None, 1):
        log = MetricsLogger(tmp_path / "w", report_to="wandb", resume_step=resume_step)
        log.log(1 if resume_step is None else 2, {"loss": 1.0})
        log.close()
    run_id = (tmp_path / "w" / "wandb_run_id").read_text().strip()
    runs = sorted((tmp_path / "w" / "wandb").glob("offline-run-*"))
    # wandb names them offline-run-<time>-<id>, adding -1 when two start in the same second
    assert len(runs) == 2 and all(re.search(rf"-{run_id}(-\d+)?$", r.name) for r in runs), runs
