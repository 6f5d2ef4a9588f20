"""SIGTERM and SIGINT (real signals, a real training process) stop a training at the next step
boundary with a checkpoint, one line naming the resume command and the shell's exit status; resuming
gives the weights and losses of an uninterrupted run. While the first training holds the folder, a
second one into it is refused in one line naming the first. Under torchrun a signal to one rank stops
every rank at the same step (no rank is left waiting in the checkpoint's collectives)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from launching import ROOT, free_port, run_train
from vlm2vec.config import Config, DataConfig, TrainConfig, save_config
from vlm2vec.testing import tiny_model_config
from vlm2vec.testing.synthetic import write_synthetic_mmeb_train

STEPS = 10


def _config(tmp_path: Path, model_dir: Path, data_dir: Path, name: str) -> Path:
    train = TrainConfig(
        output_dir=str(tmp_path / name),
        seed=1,
        per_device_batch_size=4,
        qry_chunk_size=2,
        tgt_chunk_size=2,
        max_steps=STEPS,
        lr=5e-3,
        log_every=1,
        report_to="none",
    )
    model = tiny_model_config("qwen2_vl", model_dir, lora=True, lora_r=4, lora_dropout=0.2)
    cfg = Config(model=model, data=DataConfig(mmeb_train_dir=str(data_dir)), train=train)
    return save_config(cfg, tmp_path / f"{name}.yaml")


def _env() -> dict[str, str]:
    paths = (str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH"))
    return os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def _train_process(config: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(config), *args]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _logged_steps(out: Path) -> int:
    path = out / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def _interrupt(config: Path, out: Path, signum: int, after: int, *args: str) -> str:
    """Start the training, send `signum` once `after` steps are logged; returns its stderr."""
    proc = _train_process(config, *args)
    deadline = time.monotonic() + 300
    while _logged_steps(out) < after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.kill(proc.pid, signum)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signum, err[-3000:]
    return err


def _checkpointed_step(err: str, name: str, config: Path, out: Path) -> int:
    """The step of the checkpoint the interrupt line names (checked: one line, the resume command)."""
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"interrupted ({name}): checkpoint of step "), err[-3000:]
    assert "resume with: " in last and last.endswith(f"--config {config} --resume")
    step = int(last.split("checkpoint of step ")[1].split()[0])
    assert (out / "checkpoints" / f"step-{step:08d}").is_dir() and not (out / "final").exists()
    assert not (out / ".lock").exists()
    return step


@pytest.mark.slow
def test_sigterm_and_sigint_checkpoint_at_a_step_boundary_and_resume_equal_an_uninterrupted_run(
    tmp_path, tiny_qwen_dir, fresh_accelerate, capsys
):
    from vlm2vec.commands import main as cli_main

    data_dir = write_synthetic_mmeb_train(
        tmp_path / "mmeb", subsets={"ImageNet_1K": "classification"}, rows_per_subset=16, splits=["original"]
    )
    run_train("--config", str(_config(tmp_path, tiny_qwen_dir, data_dir, "whole")))  # uninterrupted
    whole = load_file(tmp_path / "whole" / "final" / "adapter_model.safetensors")
    config, out = _config(tmp_path, tiny_qwen_dir, data_dir, "run"), tmp_path / "run"

    # SIGTERM mid-run; meanwhile (the first held stopped) a second training into its folder is refused
    proc = _train_process(config)
    deadline = time.monotonic() + 300
    while _logged_steps(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.kill(proc.pid, signal.SIGSTOP)
    capsys.readouterr()
    assert cli_main(["train", "--config", str(config)]) == 2
    refused = capsys.readouterr().err.strip().splitlines()
    assert len(refused) == 1 and f"being written by train (pid {proc.pid}" in refused[0]
    os.kill(proc.pid, signal.SIGCONT)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    first = _checkpointed_step(err, "SIGTERM", config, out)

    # the resumed run, stopped by SIGINT (Ctrl-C) a few steps on, then resumed to the end
    err = _interrupt(config, out, signal.SIGINT, first + 2, "--resume")
    second = _checkpointed_step(err, "SIGINT", config, out)
    assert first < second < STEPS
    run_train("--config", str(config), "--resume")

    resumed = load_file(out / "final" / "adapter_model.safetensors")
    assert resumed.keys() == whole.keys() and all(torch.equal(resumed[k], whole[k]) for k in whole)
    assert _losses(out) == _losses(tmp_path / "whole")


def _worker_of_rank(launcher: int, rank: str) -> int | None:
    """The pid of the torchrun worker with RANK=`rank` among the launcher's children (None yet)."""
    children = Path(f"/proc/{launcher}/task/{launcher}/children")
    for pid in children.read_text().split() if children.is_file() else []:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return int(pid)
    return None


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_every_rank_at_the_same_step_with_one_checkpoint(tmp_path, tiny_qwen_dir):
    data_dir = write_synthetic_mmeb_train(
        tmp_path / "mmeb", subsets={"ImageNet_1K": "classification"}, rows_per_subset=16, splits=["original"]
    )
    config, out = _config(tmp_path, tiny_qwen_dir, data_dir, "ddp"), tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", str(ROOT / "train.py"), "--config", str(config)]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while _logged_steps(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    worker = _worker_of_rank(proc.pid, "1")
    assert proc.poll() is None and worker is not None, "the run ended before it could be interrupted"
    os.kill(worker, signal.SIGTERM)  # only rank 1 is told: rank 0 learns it at the step boundary
    _, err = proc.communicate(timeout=300)  # a rank left behind in a collective would hang here
    lines = [
        line for line in err.splitlines() if line.startswith("interrupted (SIGTERM): checkpoint of step ")
    ]
    assert len(lines) == 1, err[-3000:]  # printed once, by rank 0
    step = int(lines[0].split("checkpoint of step ")[1].split()[0])
    checkpoint = out / "checkpoints" / f"step-{step:08d}"
    assert (checkpoint / "trainer_state.json").is_file() and not (out / "final").exists(), err[-3000:]
    assert json.loads((checkpoint / "trainer_state.json").read_text())["step"] == step
    assert list((out / "checkpoints").iterdir()) == [checkpoint]
