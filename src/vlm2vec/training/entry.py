"""What `train.py` calls: logging set-up, the run, readable errors, and a clean exit in distributed runs."""

from __future__ import annotations

import logging
import os
import sys

import torch.distributed as dist

from ..config import Config, ConfigError
from ..data import BadRowError
from .loop import NonFiniteLossError, TrainResult, train

#: errors whose message says everything; shown without a traceback
USER_ERRORS = (ConfigError, BadRowError, NonFiniteLossError, FileNotFoundError)


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


def run(cfg: Config) -> TrainResult:
    """Train as configured. In a distributed run the process exits here (code 0 or 1) instead of returning."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    rank = os.environ.get("RANK", "0")
    if rank != "0":
        logging.getLogger().setLevel(logging.WARNING)
    try:
        result = train(cfg)
    except USER_ERRORS as exc:
        print(f"[rank {rank}] error: {exc}", file=sys.stderr)
        if _distributed():
            _leave(1)
        raise SystemExit(1) from None
    except BaseException:
        if _distributed():
            logging.getLogger(__name__).exception("training failed")
            _leave(1)
        raise
    if result.final_dir is not None and rank == "0":
        print(f"model saved to {result.final_dir}")
    if _distributed():
        _leave(0)
    return result
