"""Run a script in fresh processes for the multi-process and end-to-end tests: plain python, or
torchrun over gloo; `train.py` in particular (`run_train`)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(
    script: Path, *args: str, nproc: int | None = None, timeout: int = 300, threads: int = 1
) -> subprocess.CompletedProcess:
    """`python script args` (nproc None) or `torchrun --nproc_per_node nproc script args`, from the
    repository root with `threads` threads per process and the package and these test helpers
    importable; fails the test with the output's tail if it fails."""
    cmd = [sys.executable, str(script)]
    if nproc is not None:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
        cmd += ["--master_addr=127.0.0.1", f"--master_port={free_port()}", str(script)]
    paths = (str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH"))
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    proc = subprocess.run([*cmd, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def run_train(*args: str, timeout: int = 600, threads: int = 1) -> subprocess.CompletedProcess:
    """`python train.py args` in a fresh process (see `launch`)."""
    return launch(ROOT / "train.py", *args, timeout=timeout, threads=threads)
