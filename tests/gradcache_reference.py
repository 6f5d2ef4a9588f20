"""Plain-autograd references for GradCache: the same chunks GradCache forwards, without the cache.

GradCache groups a side's rows by length before chunking, so which rows share a forward pass (and,
with dropout, which masks they draw; in fp32, how reductions round) follows its plan. A reference that
forwards the same chunks and backpropagates through their concatenated reps isolates what GradCache
itself must get right: the cached-gradient replay.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from vlm2vec.chunking import plan_chunks, row_lengths


def gradcache_plan(inputs: Mapping[str, torch.Tensor], chunk: int) -> list[list[int]]:
    """The chunks GradCache cuts a side into (rows grouped by length; a side that fits one chunk stays
    in row order). Computed without `GradCache.plan`, whose count agreement is a collective."""
    plan = plan_chunks(row_lengths(inputs), chunk)
    return plan if len(plan) > 1 else [list(range(len(row_lengths(inputs))))]


def reps_in_row_order(
    model: torch.nn.Module, inputs: Mapping[str, torch.Tensor], plan: list[list[int]], side: str
) -> torch.Tensor:
    """One side's reps from the chunks of `plan` (with the autograd graph), put back in row order."""
    reps = torch.cat([model(**{side: c})[f"{side}_reps"] for c in model.split_batch(inputs, plan)])
    return reps[torch.argsort(torch.tensor([r for rows in plan for r in rows]))]
