"""An MMEB-V2 evaluation killed with SIGKILL part-way (no handler runs, nothing is flushed) resumes to
the results of an uninterrupted run, re-encoding only what no finished cache chunk holds."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vlm2vec.model import EmbeddingModel
from vlm2vec.testing import make_tiny_checkpoint, tiny_model_config
from vlm2vec.testing.synthetic_v2 import write_synthetic_v2

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/eval/mmeb_v2.yaml"
TASKS = "[video, visdoc]"


def _command(model: Path, v2: Path, out: Path) -> list[str]:
    return [sys.executable, str(ROOT / "evaluate.py"), "--config", str(CONFIG), f"--model.path={model}",
            f"--eval.v2_root={v2}", f"--eval.data_dir={v2}", f"--eval.output_dir={out}", f"--eval.v2_tasks={TASKS}",
            "--eval.skip_missing=true", "--eval.batch_size=2", "--eval.cache_chunk_items=2",
            "--eval.num_workers=0"]  # fmt: skip


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }


def _scores(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    return {name: row["score"] for name, row in summary["datasets"].items()}


def _chunks(out: Path) -> set[Path]:
    return set(out.rglob("chunk-*.pt"))


def _cached_keys(out: Path) -> list[str]:
    return sorted(k for f in _chunks(out) for k in torch.load(f, weights_only=True)["keys"])


def _identity(files: set[Path]) -> dict[Path, tuple[int, int]]:
    """Inode and mtime of each file: an atomic re-write (temp file + rename) changes both."""
    return {f: (f.stat().st_ino, f.stat().st_mtime_ns) for f in files}


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path):
    base = make_tiny_checkpoint("qwen2_vl", tmp_path / "base")
    model = EmbeddingModel.from_config(tiny_model_config("qwen2_vl", base)).save_pretrained(tmp_path / "m")
    v2 = write_synthetic_v2(tmp_path / "v2")

    ref = tmp_path / "ref"
    done = subprocess.run(_command(model, v2, ref), capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    all_chunks = len(_chunks(ref))

    run = tmp_path / "run"
    proc = subprocess.Popen(
        _command(model, v2, run), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()
    )
    deadline = time.monotonic() + 300
    while len(_chunks(run)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed part-way"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = _identity(_chunks(run))
    assert 3 <= len(kept) < all_chunks and not (run / "summary.json").exists()

    resumed = subprocess.run(
        _command(model, v2, run), capture_output=True, text=True, env=_env(), timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _scores(run) == _scores(ref)
    # the chunks finished before the kill were reused as they were (none encoded and written again),
    # and the cache ends holding exactly the uninterrupted run's items
    assert _identity(set(kept)) == kept
    assert _cached_keys(run) == _cached_keys(ref)
