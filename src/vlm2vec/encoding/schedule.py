"""The encode schedule: which length-sorted batches a side is cut into and which must be encoded.

Batches hold `batch_size` items, or (`batch_tokens`) as many as fit a budget of padded tokens, rows x
longest row, from each item's token count estimated before encoding (`token_counts`), packed by the
training splitter (`chunking.plan_chunks`): short text items share big batches, image items go few at
a time. The batches are cut from the full item list, independently of the number of processes and of
what the cache already holds (the batch layout is part of the cache's and the results' keys, so reps
from another layout are never mixed in); a batch is either taken whole from the cache or encoded
whole. So every item is always encoded with the same batch neighbours (the same padding).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from ..chunking import plan_chunks
from ..config import ConfigError
from .cache import RepCache
from .items import Item, ItemSource, item_key


def length_order(items: list[Item]) -> list[int]:
    """Longest first (image and video items, then by text length), index as tie-break: deterministic."""
    return sorted(
        range(len(items)), key=lambda i: (-bool(items[i].image or items[i].video), -len(items[i].text), i)
    )


def token_batches(token_counts: list[int], batch_tokens: int) -> list[list[int]]:
    """Items sorted by tokens (longest first, index as tie-break) and packed greedily into batches of
    at most `batch_tokens` padded tokens (rows x longest row); a longer item gets a batch of its own."""
    if batch_tokens < 1:
        raise ConfigError(f"eval.batch_tokens must be >= 1 or null, got {batch_tokens}")
    return plan_chunks(token_counts, max_tokens=batch_tokens)


@dataclass
class EncodeSchedule:
    """A side's batches (`batches`), those to encode (`todo`) and the reps the cache already holds."""

    items: list[Item]
    keys: list[str]
    batches: list[list[int]]
    todo: list[list[int]]
    cached: dict[str, torch.Tensor]
    cache: RepCache | None
    source: ItemSource = field(default_factory=ItemSource)

    @property
    def num_todo_items(self) -> int:
        return sum(len(b) for b in self.todo)

    @property
    def largest_batch(self) -> int:
        """Rows of the largest batch (1 when there is none)."""
        return max(len(b) for b in self.batches) if self.batches else 1


def schedule_encoding(
    items: list[Item],
    batch_size: int,
    cache: RepCache | None,
    image_stamps: Mapping[str, str] | None = None,
    source: ItemSource | None = None,
    *,
    batch_tokens: int | None = None,
    token_counts: list[int] | None = None,
) -> EncodeSchedule:
    """Cut length-sorted batches and mark those with any item missing from the cache.

    Batches hold `batch_size` items, or with `batch_tokens` as many as keep rows x longest row within
    that many tokens (`token_counts`: each item's, from `token_counts.item_token_counts`).
    `image_stamps` (image or frame path -> "size:mtime_ns") go into the item keys, so a replaced image
    or frame file misses the cache.
    """
    if batch_size < 1:
        raise ConfigError(f"eval.batch_size must be >= 1, got {batch_size}")
    stamps = image_stamps or {}
    keys = [item_key(it, stamps.get(it.image, ""), [stamps.get(f, "") for f in it.video]) for it in items]
    if batch_tokens is None:
        order = length_order(items)
        batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    else:
        if token_counts is None or len(token_counts) != len(items):
            raise ValueError("schedule_encoding: batch_tokens needs one token count per item")
        batches = token_batches(token_counts, batch_tokens)
    cached = cache.load() if cache is not None else {}
    todo = [b for b in batches if any(keys[i] not in cached for i in b)]
    return EncodeSchedule(items, keys, batches, todo, cached, cache, source or ItemSource())
