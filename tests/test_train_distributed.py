"""Two processes (gloo, CPU) give the single-process result for the same global batch: DDP and ZeRO-2.

Full fine-tuning of the tiny Qwen2-VL with GradCache chunks. ImageNet_1K targets and MSCOCO_t2i
queries are text-only, so on mixed batches some chunks of one rank have images where the other
rank's have none (the DDP case of parameters unused by a chunk). ZeRO-2 reduces gradients on every
backward in the order they become ready, which must then be the same on all ranks: its run uses
per-source batches (the recipes' setting), where every chunk of a side has the same modality on all
ranks. (Full fine-tuning under ZeRO-2 on mixed batches gives different gradients: see docs/training.md.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vlm2vec.config import Config, DataConfig, TrainConfig, save_config
from vlm2vec.testing import tiny_model_config
from vlm2vec.testing.synthetic import write_synthetic_mmeb_train

ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH, STEPS = 8, 3
ZERO2 = ROOT / "configs" / "deepspeed" / "zero2.json"  # the shipped config, "auto" entries filled by us


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(nproc: int, config: Path, *extra: str) -> None:
    cmd = [sys.executable, str(ROOT / "train.py")]
    if nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            str(ROOT / "train.py"),
        ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*cmd, "--config", str(config), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-6000:]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_qwen_dir):
    root = tmp_path_factory.mktemp("dist")
    subsets = {"ImageNet_1K": "classification", "MSCOCO_t2i": "retrieval_t2i"}
    data_dir = write_synthetic_mmeb_train(
        root / "mmeb", subsets=subsets, rows_per_subset=16, splits=["original"]
    )

    def run(
        name: str, nproc: int, per_source: bool = False, **train_kw
    ) -> tuple[list[dict], dict[str, torch.Tensor]]:
        train = TrainConfig(
            output_dir=str(root / name),
            seed=0,
            per_device_batch_size=GLOBAL_BATCH // nproc,
            qry_chunk_size=2,
            tgt_chunk_size=2,
            max_steps=STEPS,
            lr=1e-3,
            warmup_steps=0,
            mask_false_negatives=True,
            report_to="none",
            **train_kw,
        )
        cfg = Config(
            model=tiny_model_config("qwen2_vl", tiny_qwen_dir),
            data=DataConfig(mmeb_train_dir=str(data_dir), per_source_batches=per_source),
            train=train,
        )
        _launch(nproc, save_config(cfg, root / f"{name}.yaml"))
        out = root / name
        metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return metrics, load_file(out / "final" / "model.safetensors")

    return run, root


def _assert_same_run(a: tuple, b: tuple) -> None:
    (ma, wa), (mb, wb) = a, b
    assert [r["step"] for r in ma] == [r["step"] for r in mb] == list(range(1, STEPS + 1))
    for ra, rb in zip(ma, mb):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-4, abs=1e-5)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=1e-4, atol=2e-5, msg=key)


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(setup):
    run, _ = setup
    _assert_same_run(run("single", 1), run("ddp", 2))


@pytest.mark.slow
def test_two_process_deepspeed_zero2_matches_one_process(setup):
    run, _ = setup
    single = run("single_per_source", 1, per_source=True)
    _assert_same_run(single, run("zero2", 2, per_source=True, deepspeed_config=str(ZERO2)))
