"""`vlm2vec train` / train.py: logging set-up, the run, its summary, and a clean exit in distributed runs. Expected
errors (`UserError`) propagate to `running.run_command`, which prints them as one line (exit 2); in a
distributed run each rank leaves at once instead (see `_leave`), printing the line itself, prefixed
with its rank.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

import torch.distributed as dist

from ..config import Config
from ..errors import USER_ERROR_EXIT, UserError, user_message
from ..outputs import Interrupted, print_summary, rerun_command
from ..training import TrainResult, train
from .running import debug_enabled


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _leave(code: int) -> None:
    """Flush and exit now. With gloo, interpreter teardown after collectives often aborts a rank, and a
    rank that failed alone would leave the others blocked in a collective: `os._exit` avoids both (the
    launcher then stops the remaining ranks)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    if code == 0:
        dist.destroy_process_group()
    os._exit(code)


def _print_summary(cfg: Config, result: TrainResult) -> None:
    out = result.output_dir
    if result.finished_before:
        print(f"run in {out} is already finished (step {result.step}); model in {result.final_dir}")
        return
    written = [("metrics", out / "metrics.jsonl"), ("checkpoints", out / "checkpoints")]
    figures = [f"step {result.step} of {cfg.train.max_steps}"]
    if result.loss is not None:
        figures.append(f"last loss {result.loss:.4f}")
    figures.append(f"{result.skipped_rows} rows skipped")
    if result.final_dir is None:  # train.stop_at_step stopped it early
        print_summary(f"train: stopped at step {result.step}", written, figures, rerun_command("--resume"))
        return
    print_summary(
        f"train: model saved to {result.final_dir}",
        [("model", result.final_dir), *written],
        figures,
        f"vlm2vec eval --config configs/eval/mmeb.yaml --model.path={result.final_dir}",
    )


def run(cfg: Config, explicit: set[str] | None = None) -> TrainResult:
    """Train as configured (`explicit`: the keys the YAML file or a flag set). In a distributed run the process exits here (code 0, 1 or 2) instead of returning."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    rank = os.environ.get("RANK", "0")
    if rank != "0":
        logging.getLogger().setLevel(logging.WARNING)
    try:
        result = train(cfg, validated=True, explicit=explicit)  # load_config validated it
    except UserError as exc:
        if not _distributed():
            raise
        if debug_enabled():
            traceback.print_exc()
        print(f"error: [rank {rank}] {user_message(exc)}", file=sys.stderr)
        _leave(USER_ERROR_EXIT)
    except Interrupted as exc:
        if not _distributed():
            raise
        if rank == "0":
            print(f"interrupted ({exc.signal_name}): {exc.message}", file=sys.stderr)
        _leave(exc.exit_code)
    except BaseException:
        if _distributed():
            logging.getLogger(__name__).exception("training failed")
            _leave(1)
        raise
    if rank == "0":
        _print_summary(cfg, result)
    if _distributed():
        _leave(0)
    return result
