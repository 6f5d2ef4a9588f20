"""Metrics sinks: always a JSONL file, plus wandb (online or offline) or TensorBoard.

`report_to`:
- `auto`: wandb when it is configured (WANDB_API_KEY, or WANDB_MODE=offline/online), else TensorBoard;
- `wandb`, `tensorboard`: that one (an error if it cannot start);
- `none`: only the JSONL file.
Only the main process writes. `metrics.jsonl` in the output dir holds one object per logged step, so
runs can be compared without either service; a resumed run keeps the lines up to its checkpoint.
A resumed run continues the same TensorBoard run (events after the checkpoint's step are purged) and
the same wandb run (its id is kept in `<output_dir>/wandb_run_id`), with the same step numbers.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from ..atomic_files import atomic_write_text
from ..config import TrainConfig, choices_of
from ..errors import import_extra

logger = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb_run_id"


def wandb_configured() -> bool:
    return bool(os.environ.get("WANDB_API_KEY")) or os.environ.get("WANDB_MODE", "").lower() in (
        "offline",
        "online",
    )


def _records_up_to(path: Path, step: int) -> list[str]:
    """Lines of a previous run's JSONL up to `step`: a resumed run rewrites what came after."""
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line + "\n")  # a last line may have lost its newline to the kill
        except json.JSONDecodeError:  # a line cut short by the kill
            continue
    return kept


class MetricsLogger:
    """`log(step, metrics)` to every sink; `close()` flushes. A no-op on non-main processes."""

    def __init__(
        self,
        output_dir: str | os.PathLike,
        *,
        report_to: str = "auto",
        run_name: str | None = None,
        config: dict[str, Any] | None = None,
        enabled: bool = True,
        resume_step: int | None = None,
    ):
        backends = choices_of(TrainConfig, "report_to")
        if report_to not in backends:
            raise ValueError(f"train.report_to must be one of {backends}, got {report_to!r}")
        self.enabled = enabled
        self.backend = "none"
        self._wandb = None
        self._tb = None
        self._jsonl = None
        if not enabled:
            return
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        resume = resume_step is not None
        path = out / "metrics.jsonl"
        if resume and path.is_file():  # cut back atomically: a kill now must not lose the history
            atomic_write_text(path, "".join(_records_up_to(path, resume_step)))
            self._jsonl = path.open("a", encoding="utf-8")
        else:
            self._jsonl = path.open("w", encoding="utf-8")
        backend = report_to
        if backend == "auto":
            backend = "wandb" if wandb_configured() else "tensorboard"
        if backend == "wandb":
            wandb = import_extra("wandb", needed_for=f"train.report_to={report_to} (wandb)")
            id_file = out / WANDB_ID_FILE
            run_id = id_file.read_text().strip() if resume and id_file.is_file() else None
            if run_id is None:
                run_id = secrets.token_hex(4)  # wandb ids: lowercase letters and digits
                atomic_write_text(id_file, run_id + "\n")
            self._wandb = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "vlm2vec"),
                name=run_name,
                dir=str(out),
                config=config,
                id=run_id,
                resume="allow",
            )
        elif backend == "tensorboard":
            tensorboard = import_extra("torch.utils.tensorboard", needed_for=f"train.report_to={report_to}")
            # purge_step: TensorBoard drops events of this step and later logged before the kill
            purge = resume_step + 1 if resume else None
            self._tb = tensorboard.SummaryWriter(log_dir=str(out / "tensorboard"), purge_step=purge)
        self.backend = backend
        logger.info("metrics: %s/metrics.jsonl%s", out, "" if backend == "none" else f" + {backend}")

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": step, **metrics}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        numeric = {
            k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if self._wandb is not None:
            self._wandb.log({f"train/{k}": v for k, v in numeric.items()}, step=step)
        if self._tb is not None:
            for key, value in numeric.items():
                self._tb.add_scalar(f"train/{key}", value, step)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
