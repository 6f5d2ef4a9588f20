"""The one splitter: cut a processed batch into chunks of rows, grouped by length, trimmed of padding.

GradCache forwards a batch chunk by chunk. Slicing rows in their given order keeps the whole batch's
padded width in every chunk (a 1-token text row padded to an image row's 775 tokens pays for 775 in
both passes). Here instead:

- `plan_chunks` sorts a side's rows by length (longest first, stable) and packs them greedily into
  chunks limited by a row count and/or a token budget (rows x longest row, i.e. the padded tokens the
  chunk costs), so short text rows share a chunk and image rows go few at a time;
- `split_rows` builds each chunk's sub-batch (row tensors indexed, image tensors routed to the rows that
  own them) and trims its token columns to the span its own rows use, on either padding side; position
  ids are computed by the backbones from the attention mask, so trimming does not change them;
- `padding_counts` reports the real and padded tokens the chunks make the model compute.

The contrastive loss only needs each query to keep its own positive, so the caller puts the reps back
in the original row order (`GradCache` does, with the concatenated plan as permutation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

Batch = dict[str, Any]
Plan = list[list[int]]

#: [B, T] keys cut to a chunk's own width (others with one entry per row are indexed on dim 0 only)
TOKEN_KEYS: tuple[str, ...] = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


def num_rows(inputs: Mapping[str, Any]) -> int:
    """Rows (examples) of a processed batch: the length of `input_ids` (or `attention_mask`)."""
    for key in ("input_ids", "attention_mask"):
        if isinstance(inputs.get(key), torch.Tensor):
            return int(inputs[key].shape[0])
    for value in inputs.values():
        if isinstance(value, torch.Tensor):
            return int(value.shape[0])
    raise ValueError(f"cannot tell the batch size of a batch with keys {sorted(inputs)}")


def row_lengths(inputs: Mapping[str, Any]) -> list[int]:
    """Real tokens (text and image positions) of each row, from the attention mask."""
    mask = inputs.get("attention_mask")
    if isinstance(mask, torch.Tensor):
        return [int(n) for n in mask.sum(-1).tolist()]
    ids = inputs.get("input_ids")
    width = int(ids.shape[1]) if isinstance(ids, torch.Tensor) and ids.dim() > 1 else 1
    return [width] * num_rows(inputs)


def plan_chunks(
    lengths: Sequence[int],
    max_rows: int | None = None,
    max_tokens: int | None = None,
    by_length: bool = True,
) -> Plan:
    """Row indices of each chunk. Without limits: one chunk of every row, in order.

    `by_length` orders rows longest first (ties keep their order) before packing; a chunk closes when
    one more row would exceed `max_rows` or make rows x longest row exceed `max_tokens`. A row longer
    than `max_tokens` gets a chunk of its own (rows are never cut).
    """
    for name, value in (("max_rows", max_rows), ("max_tokens", max_tokens)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be a positive integer or None, got {value}")
    order = list(range(len(lengths)))
    if by_length:
        order.sort(key=lambda i: -lengths[i])
    plan: Plan = []
    current: list[int] = []
    longest = 0
    for i in order:
        width = max(longest, lengths[i])
        full_rows = max_rows is not None and len(current) >= max_rows
        full_tokens = max_tokens is not None and (len(current) + 1) * width > max_tokens
        if current and (full_rows or full_tokens):
            plan.append(current)
            current, width = [], lengths[i]
        current.append(i)
        longest = width
    if current:
        plan.append(current)
    return plan


def equalize(plan: Plan, count: int, lengths: Sequence[int]) -> Plan:
    """Split the costliest chunks (rows x longest row) in two until the plan has `count` chunks.

    Ranks must run the same number of chunk passes (ZeRO-3 gathers parameters with a collective in
    every forward; the last backward synchronises gradients); token budgets can give them different
    counts, so every rank is brought up to the largest. Splitting keeps each part's rows in order.
    """
    plan = [list(c) for c in plan]
    while len(plan) < count:
        splittable = [i for i, c in enumerate(plan) if len(c) > 1]
        if not splittable:
            raise ValueError(
                f"cannot cut {sum(len(c) for c in plan)} row(s) into {count} chunks to match the other "
                "ranks: give every rank the same number of rows, or size chunks by rows"
            )
        i = max(splittable, key=lambda j: (len(plan[j]) * max(lengths[r] for r in plan[j]), -j))
        half = (len(plan[i]) + 1) // 2
        plan[i : i + 1] = [plan[i][:half], plan[i][half:]]
    return plan


def _owned(counts: Sequence[int], rows: Sequence[int]) -> torch.Tensor:
    """Indices of the dim-0 entries owned by `rows`, when row r owns `counts[r]` consecutive entries."""
    starts = torch.tensor([0, *counts]).cumsum(0).tolist()
    idx = [j for r in rows for j in range(starts[r], starts[r] + counts[r])]
    return torch.tensor(idx, dtype=torch.long)


def take_rows(
    inputs: Mapping[str, Any],
    rows: Sequence[int],
    spans: Mapping[str, Sequence[int]] | None = None,
    token_keys: Sequence[str] = TOKEN_KEYS,
    trim: bool = True,
) -> Batch:
    """The sub-batch of `rows` (in that order), trimmed to the columns its rows use.

    `spans[key]` gives, for a key whose dim 0 does not run over rows (images, image patches), how many
    entries each row owns; such a key is left out of a chunk that owns none (a text-only chunk), as the
    processors do for a text-only batch. Any other tensor or list must have one entry per row.
    """
    spans = spans or {}
    n = num_rows(inputs)
    index = torch.tensor(list(rows), dtype=torch.long)
    chunk: Batch = {}
    for key, value in inputs.items():
        if key in spans:
            owned = _owned(spans[key], rows)
            if owned.numel():
                chunk[key] = value[owned.to(value.device)]
            continue
        if isinstance(value, (torch.Tensor, list, tuple)):
            if len(value) != n:
                raise ValueError(
                    f"'{key}' has {len(value)} entries but the batch has {n} rows: the backbone must say "
                    "which rows own them (Backbone.row_spans)"
                )
            if isinstance(value, torch.Tensor):
                chunk[key] = value[index.to(value.device)]
            else:
                chunk[key] = (
                    type(value)(value[i] for i in rows)
                    if isinstance(value, tuple)
                    else [value[i] for i in rows]
                )
        else:
            chunk[key] = value
    mask = chunk.get("attention_mask")
    if trim and isinstance(mask, torch.Tensor) and mask.dim() == 2 and mask.shape[0]:
        used = mask.bool().any(0).nonzero().squeeze(-1)
        if used.numel():
            lo, hi = int(used[0]), int(used[-1]) + 1
            if (lo, hi) != (0, mask.shape[1]):
                width = mask.shape[1]
                for key in token_keys:
                    value = chunk.get(key)
                    if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[1] == width:
                        chunk[key] = value[:, lo:hi]
    return chunk


def split_rows(
    inputs: Mapping[str, Any],
    plan: Plan | int,
    spans: Mapping[str, Sequence[int]] | None = None,
    token_keys: Sequence[str] = TOKEN_KEYS,
    trim: bool = True,
) -> list[Batch]:
    """One sub-batch per chunk of `plan` (row indices; an int means consecutive chunks of that many rows)."""
    if isinstance(plan, int):
        n = num_rows(inputs)
        plan = [list(range(s, min(s + plan, n))) for s in range(0, n, plan)]
    return [take_rows(inputs, rows, spans, token_keys, trim) for rows in plan]


def padding_counts(batches: Sequence[Mapping[str, Any] | None]) -> tuple[int, int]:
    """(real tokens, padded tokens) the model computes for these batches: mask ones, and the rest of
    rows x width. One forward's worth; the two-pass GradCache computes them twice."""
    real = padded = 0
    for batch in batches:
        if batch is None:
            continue
        mask = batch.get("attention_mask")
        if isinstance(mask, torch.Tensor):
            ones = int(mask.sum())
            real, padded = real + ones, padded + mask.numel() - ones
    return real, padded


class PaddingMeter:
    """Per-step means of real and padded tokens over a logging interval (for metrics.jsonl)."""

    def __init__(self) -> None:
        self.steps, self.tokens, self.padded = 0, 0, 0

    def add(self, tokens: int, padded: int) -> None:
        self.steps, self.tokens, self.padded = self.steps + 1, self.tokens + tokens, self.padded + padded

    def pop(self) -> dict[str, float]:
        """`tokens` and `padded_tokens` per step (all ranks, one forward pass), then reset."""
        steps = max(1, self.steps)
        out = {"tokens": self.tokens / steps, "padded_tokens": self.padded / steps}
        self.__init__()
        return out
