"""Two processes (gloo, CPU) give the single-process result for the same global batch: DDP, ZeRO-2/3, FSDP2.

Full fine-tuning of the tiny Qwen2-VL with GradCache chunks. ImageNet_1K targets and MSCOCO_t2i
queries are text-only, so on mixed batches some chunks of one rank have images where the other
rank's have none. DDP then needs every trainable parameter in every chunk's graph; ZeRO-2 reduces
gradients on every backward, packed in the order they become ready, which must be the same on all
ranks. Both hold because a text-only training chunk runs the vision path on a dummy image and adds
its features (times zero) to the input embeddings, where real image features go.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from launching import free_port, launch
from vlm2vec import load_processor
from vlm2vec.backbones import get_backbone
from vlm2vec.chunking import plan_chunks, row_lengths
from vlm2vec.config import Config, DataConfig, TrainConfig, load_config, save_config
from vlm2vec.data import build_sources, build_train_loader
from vlm2vec.testing import tiny_model_config
from vlm2vec.testing.synthetic import write_synthetic_mmeb_train

ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH, STEPS = 8, 3
ZERO2 = ROOT / "configs" / "deepspeed" / "zero2.json"  # the shipped config, "auto" entries filled by us
ZERO3 = ROOT / "configs" / "deepspeed" / "zero3.json"


def _launch(nproc: int, config: Path, *extra: str) -> str:
    proc = launch(
        ROOT / "train.py", "--config", str(config), *extra, nproc=nproc if nproc > 1 else None, timeout=600
    )
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_qwen_dir):
    root = tmp_path_factory.mktemp("dist")
    subsets = {"ImageNet_1K": "classification", "MSCOCO_t2i": "retrieval_t2i"}
    data_dir = write_synthetic_mmeb_train(
        root / "mmeb", subsets=subsets, rows_per_subset=16, splits=["original"]
    )

    done: dict[str, tuple[list[dict], dict[str, torch.Tensor]]] = {}

    def run(
        name: str, nproc: int, per_source: bool = False, **train_kw
    ) -> tuple[list[dict], dict[str, torch.Tensor]]:
        if name in done:  # the single-process references serve several tests
            return done[name]
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
            data=DataConfig(mmeb_train_dir=str(data_dir), sub_batch="source" if per_source else "iid"),
            train=train,
        )
        run.logs[name] = _launch(nproc, save_config(cfg, root / f"{name}.yaml"))
        out = root / name
        metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        done[name] = metrics, load_file(out / "final" / "model.safetensors")
        return done[name]

    run.logs = {}  # launch output by run name
    return run, root


def _assert_same_run(a: tuple, b: tuple) -> None:
    (ma, wa), (mb, wb) = a, b
    assert [r["step"] for r in ma] == [r["step"] for r in mb] == list(range(1, STEPS + 1))
    for ra, rb in zip(ma, mb):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-4, abs=1e-5)
        assert rb["masked_negatives"] == ra["masked_negatives"]  # counted over the global batch
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=1e-4, atol=2e-5, msg=key)


def _chunks_differing_in_modality(config: Path, nproc: int = 2) -> int:
    """How many (step, side, chunk) positions have images on some rank and none on another."""
    cfg = load_config(config)
    t = cfg.train
    per_rank = []
    for rank in range(nproc):
        loader, _ = build_train_loader(
            cfg.data,
            build_sources(cfg.data),
            load_processor(cfg.model),
            per_device_batch_size=t.per_device_batch_size,
            max_length=cfg.model.max_length,
            seed=t.seed,
            rank=rank,
            world_size=nproc,
            max_steps=t.max_steps,
        )
        per_rank.append(
            [
                [
                    "pixel_values" in chunk
                    for chunk in get_backbone("qwen2_vl").split_batch(
                        batch[side], plan_chunks(row_lengths(batch[side]), t.qry_chunk_size)
                    )
                ]
                for batch in loader
                for side in ("qry", "tgt")
            ]
        )
    return sum(len(set(flags)) > 1 for pos in zip(*per_rank) for flags in zip(*pos))


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(setup):
    run, _ = setup
    _assert_same_run(run("single", 1), run("ddp", 2))


@pytest.mark.slow
def test_two_process_deepspeed_zero2_full_fine_tune_on_mixed_batches_matches_one_process(setup):
    run, root = setup
    single = run("single", 1)
    zero2 = run("zero2_mixed", 2, deepspeed_config=str(ZERO2))
    # the ranks' chunks really differ in modality at the same position (what used to break ZeRO-2)
    assert _chunks_differing_in_modality(root / "zero2_mixed.yaml") > 0
    _assert_same_run(single, zero2)


@pytest.mark.slow
def test_two_process_deepspeed_zero2_per_source_batches_matches_one_process(setup):
    run, _ = setup
    single = run("single_per_source", 1, per_source=True)
    _assert_same_run(single, run("zero2", 2, per_source=True, deepspeed_config=str(ZERO2)))


@pytest.mark.slow
def test_two_process_deepspeed_zero3_matches_one_process_and_exports_the_same_folder(setup):
    """train.py under ZeRO-3 (configs/deepspeed/zero3.json) on mixed batches: the losses and final
    weights of one process, and an exported folder with the same files and keys (official layout)."""
    run, root = setup
    single = run("single", 1)
    zero3 = run("zero3_mixed", 2, deepspeed_config=str(ZERO3))
    assert _chunks_differing_in_modality(root / "zero3_mixed.yaml") > 0
    _assert_same_run(single, zero3)
    files = {p.name for p in (root / "single" / "final").iterdir()}
    assert {p.name for p in (root / "zero3_mixed" / "final").iterdir()} == files
    counts = [re.findall(r"(\d+) of (\d+) params trainable", run.logs[n]) for n in ("single", "zero3_mixed")]
    assert counts[0] and counts[1] == counts[0] and counts[0][0][0] != "0"  # real sizes under ZeRO-3


def _kill_after_checkpoint(config: Path, checkpoint: Path) -> None:
    """Launch `train.py` on 2 processes and SIGKILL the launcher and both ranks (no handler runs)
    once `checkpoint` is complete."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1"]
    cmd += [f"--master_port={free_port()}", str(ROOT / "train.py"), "--config", str(config)]
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]),
    }
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while (
        not (checkpoint / "trainer_state.json").is_file()
        and proc.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed part-way"
    ranks = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    for pid in ranks:  # the ranks run in sessions of their own: killing the launcher leaves them
        os.kill(int(pid), signal.SIGKILL)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_two_process_fsdp2_matches_one_process_exports_the_same_folder_and_resumes_after_kill(setup):
    """train.py under FSDP2 (`train.engine: fsdp2`) on mixed batches: the losses and final weights of
    one process and the same exported files; then the same run with a checkpoint every step, killed
    with SIGKILL after its first checkpoint and resumed (sharded model and optimizer state through
    torch.distributed.checkpoint), ends with the uninterrupted run's losses and weights, bit for bit."""
    run, root = setup
    single = run("single", 1)
    fsdp2 = run("fsdp2_mixed", 2, engine="fsdp2")
    assert _chunks_differing_in_modality(root / "fsdp2_mixed.yaml") > 0
    _assert_same_run(single, fsdp2)
    assert {p.name for p in (root / "fsdp2_mixed" / "final").iterdir()} == {
        p.name for p in (root / "single" / "final").iterdir()
    }

    cfg = load_config(root / "fsdp2_mixed.yaml")
    cfg.train.output_dir, cfg.train.save_every = str(root / "fsdp2_killed"), 1
    config = save_config(cfg, root / "fsdp2_killed.yaml")
    out = root / "fsdp2_killed"
    _kill_after_checkpoint(config, out / "checkpoints" / "step-00000001")
    assert not (out / "final").exists()
    assert (out / "checkpoints" / "step-00000001" / "fsdp2_state" / ".metadata").is_file()
    _launch(2, config, "--resume")
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in metrics] == [r["loss"] for r in fsdp2[0]]
    weights = load_file(out / "final" / "model.safetensors")
    assert weights.keys() == fsdp2[1].keys()
    assert all(torch.equal(weights[k], fsdp2[1][k]) for k in weights)
