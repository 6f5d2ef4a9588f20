"""What a run reports as it goes: the progress bar, and every `train.log_every` steps one metrics line.

A line holds the means over the steps since the last one (loss, grad norm, step and data time,
throughput as total work over total time, real and padded tokens, and with false-negative masking the
in-batch candidates masked per step) plus the lr, peak memory, epoch and the rows skipped so far; `data_hash` covers this rank's rows of every step of the interval, so two
runs with the same data order log the same hashes. The stopwatch times steps; the caller laps it after
anything that is not part of a step (a checkpoint save).
"""

from __future__ import annotations

import hashlib
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

from ..chunking import PaddingMeter
from .logging import MetricsLogger

logger = logging.getLogger(__name__)


def peak_memory_gb(device: torch.device) -> float:
    """Peak CUDA memory of `device`, or this process's peak resident memory on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB -> GiB (process RSS)


class Interval:
    """Per-step values summed between two log lines; `pop()` returns their means and starts over."""

    def __init__(self) -> None:
        self.steps, self.loss, self.norm, self.norms = 0, 0.0, 0.0, 0
        self.time, self.data_time, self.samples, self.tokens = 0.0, 0.0, 0, 0
        self.hash = hashlib.blake2b(digest_size=6)
        self.masked: list[int] = []

    def add(
        self,
        loss: float,
        norm: float | None,
        step_time: float,
        data_time: float,
        samples: int,
        tokens: int,
        rows: list,
        masked: int | None = None,
    ) -> None:
        self.steps += 1
        if masked is not None:
            self.masked.append(masked)
        self.loss += loss
        if norm is not None:
            self.norm, self.norms = self.norm + norm, self.norms + 1
        self.time += step_time
        self.data_time += data_time
        self.samples += samples
        self.tokens += tokens
        self.hash.update(repr(rows).encode())

    @property
    def mean_loss(self) -> float:
        return self.loss / max(1, self.steps)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.time if self.time else 0.0

    def pop(self) -> dict[str, Any]:
        record = {
            "loss": self.mean_loss,
            "grad_norm": self.norm / self.norms if self.norms else None,
            "samples_per_s": self.samples_per_s,
            "tokens_per_s": self.tokens / self.time if self.time else 0.0,
            "step_time": self.time / max(1, self.steps),
            "data_time": self.data_time / max(1, self.steps),
            "data_hash": self.hash.hexdigest(),
        }
        if self.masked:  # (query, candidate) pairs of the global batch dropped as false negatives
            record["masked_negatives"] = sum(self.masked) / len(self.masked)
        self.__init__()
        return record


class Stopwatch:
    def __init__(self) -> None:
        self.last = time.perf_counter()

    def lap(self) -> float:
        """Seconds since the previous lap (or the start)."""
        now = time.perf_counter()
        elapsed, self.last = now - self.last, now
        return elapsed


class TrainingProgress:
    """The bar, the interval means and the metrics sinks of one run; `close()` ends the bar and sinks.

    `epochs(step)` converts steps to epochs; `enabled` is false on every process but the main one.
    """

    def __init__(
        self,
        metrics: MetricsLogger,
        *,
        start_step: int,
        stop_at: int,
        max_steps: int,
        log_every: int,
        global_batch: int,
        skipped_rows: int,
        device: torch.device,
        epochs: Callable[[int], float],
        enabled: bool,
    ) -> None:
        self.metrics, self.stop_at, self.log_every = metrics, stop_at, log_every
        self.global_batch, self.skipped_rows = global_batch, skipped_rows
        self.device, self.epochs, self.enabled = device, epochs, enabled
        self.bar = tqdm(
            total=max_steps, initial=start_step, disable=not enabled, desc="train", dynamic_ncols=True
        )
        self.watch, self.interval, self.padding = Stopwatch(), Interval(), PaddingMeter()

    def lap(self) -> float:
        return self.watch.lap()

    def step_done(
        self,
        step: int,
        loss: float,
        norm: float | None,
        lr: float,
        data_time: float,
        counts: list[int],
        batch: dict,
        masked: int | None = None,
    ) -> None:
        """Account step `step` (just taken); `counts`: tokens, skipped rows, real and padded tokens, summed
        over the ranks; `masked`: false negatives the loss dropped in the global batch (None: no masking).
        Writes a metrics line every `log_every` steps and at the last step."""
        tokens, skipped, real, padded = counts
        self.skipped_rows += skipped
        self.padding.add(real, padded)
        self.interval.add(
            loss,
            norm,
            data_time + self.watch.lap(),
            data_time,
            self.global_batch,
            tokens,
            batch["rows"],
            masked,
        )
        if batch["skipped"] and self.enabled:
            logger.warning(
                "step %d: skipped %d bad row(s), e.g. %s", step, len(batch["skipped"]), batch["skipped"][0]
            )
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{self.interval.mean_loss:.4f}",
            lr=f"{lr:.2e}",
            sps=f"{self.interval.samples_per_s:.1f}",
            pad=f"{padded}/{real + padded}",
            refresh=False,
        )
        if step % self.log_every == 0 or step == self.stop_at:
            record = self.interval.pop() | self.padding.pop()
            record.update(
                lr=lr,
                peak_mem_gb=peak_memory_gb(self.device),
                epoch=self.epochs(step),
                skipped_rows=self.skipped_rows,
            )
            self.metrics.log(step, record)

    def stopped(self, step: int, loss: float, norm: float | None) -> None:
        """The metrics line of a step that stopped the run with a non-finite loss or gradient norm."""
        self.metrics.log(step, {"stopped": "non-finite loss", "loss": str(loss), "grad_norm": str(norm)})

    def close(self) -> None:
        self.bar.close()
        self.metrics.close()
