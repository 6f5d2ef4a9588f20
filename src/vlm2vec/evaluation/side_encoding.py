"""Encoding one dataset's two sides (queries, candidates) through the rep cache, for every benchmark.

A side is a list of distinct items; its schedule (batches, and which of them the cache lacks) is cut
under the evaluation's batch layout, and the missing batches are encoded, sharded over the processes,
and written back to the cache. MMEB (V1) datasets and MMEB-V2 tasks go through these same two
functions, so both are resumable, sharded and token-budgeted alike; they differ only in how their
items are built and scored.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from ..config import EvalConfig
from ..distributed import ProcessState, gather_objects
from ..encoding import (
    EncodeSchedule,
    Item,
    ItemSource,
    RepCache,
    combine_throughput,
    encode_schedule,
    item_token_counts,
    schedule_encoding,
)
from ..matryoshka import truncate_reps
from .result_settings import batch_layout


class Counters(Protocol):
    """What the encoding adds to a run's counters (`runner.EvalStats`)."""

    encode_seconds: float


def schedule_side(
    model: Any,
    items: list[Item],
    source: ItemSource,
    *,
    image_root: Path,
    image_stamps: Mapping[str, str],
    cache: RepCache,
    eval_cfg: EvalConfig,
) -> EncodeSchedule:
    """One side's encode schedule through `cache`, batched by rows or (eval.batch_tokens) tokens."""
    counts = None
    if eval_cfg.batch_tokens is not None:
        max_length = getattr(getattr(model, "cfg", None), "max_length", None)
        counts = item_token_counts(model.processor, items, image_root, max_length, source.describe)
    return schedule_encoding(
        items,
        eval_cfg.batch_size,
        cache,
        image_stamps=image_stamps,
        source=source,
        batch_tokens=eval_cfg.batch_tokens,
        token_counts=counts,
    )


def encode_sides(
    model: Any,
    name: str,
    image_root: Path,
    schedules: dict[str, EncodeSchedule],
    eval_cfg: EvalConfig,
    state: ProcessState,
    stats: Counters,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Each side's reps (cut to `eval.dim`) and the dataset's throughput, all processes together."""
    todo = sum(s.num_todo_items for s in schedules.values())
    start = time.perf_counter()
    figures: dict[str, dict[str, Any]] = {side: {} for side in schedules}
    with tqdm(total=todo, desc=f"encode {name}", unit="item", disable=not state.is_main_process) as bar:
        reps = {
            side: encode_schedule(
                model,
                schedule,
                image_root=image_root,
                state=state,
                chunk_items=eval_cfg.cache_chunk_items,
                num_workers=eval_cfg.num_workers,
                bar=bar,
                throughput=figures[side],
            )
            for side, schedule in schedules.items()
        }
    stats.encode_seconds += time.perf_counter() - start
    throughput = combine_throughput(gather_objects([list(figures.values())], state))
    throughput["batches"] = batch_layout(eval_cfg)
    if eval_cfg.dim is not None:  # the cache holds full-size reps; a Matryoshka dim is cut here
        reps = {
            side: truncate_reps(r, eval_cfg.dim, "eval.dim") if r.numel() else r for side, r in reps.items()
        }
    return reps, throughput
