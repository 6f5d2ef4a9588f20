"""Encode a schedule's batches, sharded across processes, through the rep cache.

The batches to encode are dealt to the processes chunk by chunk (`shard`), their inputs prepared in
DataLoader workers (`loader`), and each chunk's reps gathered to every process, where the main
process writes them to the cache. Batches never change with the number of processes or with what
the cache holds (`schedule`), so one process, two processes and an interrupted-then-resumed run give
bitwise the same reps. Every pass measures and logs its throughput (`meter`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..distributed import ProcessState, SingleProcess, gather_objects
from ..errors import DatasetError
from ..model import move_batch
from .loader import batch_loader
from .meter import ThroughputMeter, log_figures
from .schedule import EncodeSchedule
from .shard import shard_chunks

Encoded = list[tuple[list[int], torch.Tensor]]


def _encode_batches(
    model: Any, inputs: Iterator, count: int, param: torch.Tensor, meter: ThroughputMeter, bar: Any
) -> Encoded:
    """The next `count` batches from `inputs`, encoded: (item indices, float32 CPU reps) each."""
    local: Encoded = []
    with torch.inference_mode():
        for _ in range(count):
            t0 = time.perf_counter()
            batch, processed = next(inputs)
            meter.waited(t0)
            if isinstance(processed, DatasetError):
                raise processed
            reps = model.encode(move_batch(processed, param.device, param.dtype))
            meter.encoded(len(batch))
            if reps.shape[0] != len(batch):
                raise RuntimeError(f"model.encode returned {reps.shape[0]} reps for a batch of {len(batch)}")
            local.append((batch, reps.float().cpu()))
            if bar is not None:
                bar.update(len(batch))
    return local


def _collect(
    schedule: EncodeSchedule, local: Encoded, state: ProcessState, done: dict[str, torch.Tensor], bar: Any
) -> None:
    """Gather a chunk from every process into `done`; the main process writes it to the cache."""
    gathered = gather_objects(local, state)  # every process takes part, even with no batch of its own
    idx = [i for batch, _ in gathered for i in batch]
    reps = torch.cat([r for _, r in gathered]) if gathered else torch.empty(0)
    if bar is not None:
        bar.update(len(idx) - sum(len(b) for b, _ in local))
    chunk_keys = [schedule.keys[i] for i in idx]
    done.update(zip(chunk_keys, reps.unbind(0)))
    if schedule.cache is not None and state.is_main_process and idx:
        schedule.cache.save(chunk_keys, reps)


def encode_schedule(
    model: Any,
    schedule: EncodeSchedule,
    *,
    image_root: Path,
    state: ProcessState | None = None,
    chunk_items: int = 1024,
    num_workers: int = 0,
    bar: Any = None,
    throughput: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Encode the schedule's todo batches (sharded), save them to the cache, return float32 reps [N, H].

    `throughput`, when given, receives this process's figures (items, seconds, items_per_s,
    input_wait: the share of the time spent waiting for the DataLoader, gpu_util_pct)."""
    state = state or SingleProcess()
    param = next(iter(model.parameters()))
    chunks = shard_chunks(schedule.todo, schedule.largest_batch, chunk_items, state)
    loader = batch_loader(
        [b for mine in chunks for b in mine],
        schedule.items,
        schedule.source,
        model=model,
        image_root=image_root,
        device=param.device,
        num_workers=num_workers,
    )
    meter = ThroughputMeter(param.device)
    done: dict[str, torch.Tensor] = dict(schedule.cached)
    inputs = iter(loader)
    for mine in chunks:
        _collect(schedule, _encode_batches(model, inputs, len(mine), param, meter, bar), state, done, bar)
    figures = meter.figures()
    if figures is not None:
        if throughput is not None:
            throughput.update(figures)
        log_figures(getattr(bar, "desc", None) or "encode", figures)
    if not schedule.items:
        return torch.empty(0, 0)
    return torch.stack([done[k] for k in schedule.keys])
