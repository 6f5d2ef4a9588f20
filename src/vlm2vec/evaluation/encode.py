"""Encode distinct items in length-sorted batches, sharded across processes, through the rep cache.

Batches hold `eval.batch_size` items, or (`eval.batch_tokens`) as many as fit a budget of padded
tokens, rows x longest row, from each item's token count estimated before encoding (`token_counts`),
packed by the training splitter (`chunking.plan_chunks`): short text items share big batches, image
items go few at a time.

Exactness by construction: the batches are cut from the full length-sorted item list, independently of
the number of processes and of what the cache already holds (the batch layout is part of the cache's
and the results' keys, so reps from another layout are never mixed in); a batch is either taken whole from the
cache or encoded whole. So every item is always encoded with the same batch neighbours (the same
padding), and one process, two processes and an interrupted-then-resumed run give bitwise the same
reps. Batches are dealt round-robin to the processes one chunk at a time; after each chunk the reps are
gathered to every process and the main process writes the chunk to the cache.

An image that cannot be decoded (truncated, corrupt) fails with a `DatasetError` naming the dataset,
the row and column where the item first appears, and the path; under DataLoader workers the error is
handed back as a value and raised in the main process, so its message stays one line.

Throughput: images are read and processed in DataLoader workers (`eval.num_workers`), which keep
`PREFETCH_FACTOR` batches ready each; on CUDA the batches come in pinned memory, so the host-to-device
copy (`non_blocking`) overlaps the previous batch's forward. Every `run_plan` logs its items/s, the
share of the time spent waiting for input and, on CUDA with pynvml, the GPU utilisation; the runner
combines them per dataset into `throughput/<name>.json`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..chunking import plan_chunks
from ..model import move_batch
from .cache import RepCache
from .items import Item, item_key
from .mmeb_eval import DatasetError

logger = logging.getLogger(__name__)

#: batches each DataLoader worker keeps ready (torch's default is 2)
PREFETCH_FACTOR = 4
#: pin the processed batches in page-locked memory when the model is on CUDA
PIN_MEMORY = True


class ProcessState(Protocol):
    """What we need from `accelerate.PartialState` (or a stand-in for one process)."""

    num_processes: int
    process_index: int

    @property
    def is_main_process(self) -> bool: ...


@dataclass
class SingleProcess:
    num_processes: int = 1
    process_index: int = 0
    is_main_process: bool = True


def load_image(root: Path, rel: str) -> Image.Image:
    """Open an image as RGB (alpha dropped), fully read so the file handle is closed."""
    with Image.open(root / rel) as im:
        return im.convert("RGB")


@dataclass
class ItemSource:
    """Where a side's items come from, for error messages: dataset and each item's (row, column)."""

    dataset: str = ""
    where: list[tuple[int, str]] = field(default_factory=list)

    def describe(self, i: int) -> str:
        row, column = self.where[i] if i < len(self.where) else (None, None)
        return f"dataset {self.dataset!r}, row {row}, column {column!r}"


def length_order(items: list[Item]) -> list[int]:
    """Longest first (image items, then by text length), index as tie-break: deterministic."""
    return sorted(range(len(items)), key=lambda i: (-bool(items[i].image), -len(items[i].text), i))


def token_batches(token_counts: list[int], batch_tokens: int) -> list[list[int]]:
    """Items sorted by tokens (longest first, index as tie-break) and packed greedily into batches of
    at most `batch_tokens` padded tokens (rows x longest row); a longer item gets a batch of its own."""
    if batch_tokens < 1:
        from ..config import ConfigError

        raise ConfigError(f"eval.batch_tokens must be >= 1 or null, got {batch_tokens}")
    return plan_chunks(token_counts, max_tokens=batch_tokens)


@dataclass
class EncodePlan:
    """Which batches of a side must be encoded and which come from the cache."""

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


def plan_encoding(
    items: list[Item],
    batch_size: int,
    cache: RepCache | None,
    image_stamps: Mapping[str, str] | None = None,
    source: ItemSource | None = None,
    *,
    batch_tokens: int | None = None,
    token_counts: list[int] | None = None,
) -> EncodePlan:
    """Cut length-sorted batches and mark those with any item missing from the cache.

    Batches hold `batch_size` items, or with `batch_tokens` as many as keep rows x longest row within
    that many tokens (`token_counts`: each item's, from `token_counts.item_token_counts`).
    `image_stamps` (image path -> "size:mtime_ns") go into the item keys, so a replaced image file
    misses the cache.
    """
    if batch_size < 1:
        from ..config import ConfigError

        raise ConfigError(f"eval.batch_size must be >= 1, got {batch_size}")
    stamps = image_stamps or {}
    keys = [item_key(it, stamps.get(it.image, "")) for it in items]
    if batch_tokens is None:
        order = length_order(items)
        batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    else:
        if token_counts is None or len(token_counts) != len(items):
            raise ValueError("plan_encoding: batch_tokens needs one token count per item")
        batches = token_batches(token_counts, batch_tokens)
    cached = cache.load() if cache is not None else {}
    todo = [b for b in batches if any(keys[i] not in cached for i in b)]
    return EncodePlan(items, keys, batches, todo, cached, cache, source or ItemSource())


class _BatchInputs(Dataset):
    """Loads a batch's images and runs the processor; runs in DataLoader workers when num_workers > 0.

    An unreadable image comes back as a `DatasetError` value (raised by `run_plan`), so the message
    that names dataset, row, column and path is not wrapped in a worker traceback.
    """

    def __init__(
        self,
        batches: list[list[int]],
        items: list[Item],
        image_root: Path,
        processor: Callable,
        max_length,
        source: ItemSource,
    ):
        self.batches, self.items, self.image_root = batches, items, image_root
        self.processor, self.max_length, self.source = processor, max_length, source

    def __len__(self) -> int:
        return len(self.batches)

    def _image(self, j: int) -> list[Image.Image]:
        rel = self.items[j].image
        if not rel:
            return []
        try:
            return [load_image(self.image_root, rel)]
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for bad files
            raise DatasetError(
                f"{self.source.describe(j)}: cannot read image {str(self.image_root / rel)!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    def __getitem__(self, i: int) -> tuple[list[int], dict[str, Any] | DatasetError]:
        batch = self.batches[i]
        texts = [self.items[j].text for j in batch]
        try:
            images = [self._image(j) for j in batch]
        except DatasetError as exc:
            return batch, exc
        return batch, dict(self.processor(texts, images, max_length=self.max_length))


def _identity(x: Any) -> Any:
    return x


def gpu_utilization(device: torch.device) -> float | None:
    """The device's utilisation in percent over the driver's last sample period (None off CUDA or
    without pynvml)."""
    if device.type != "cuda":
        return None
    try:
        return float(torch.cuda.utilization(device))
    except Exception:  # pynvml missing or the driver query failed: the figure is simply not reported
        return None


def _gather(obj: list, state: ProcessState) -> list:
    if state.num_processes == 1:
        return obj
    from accelerate.utils import gather_object

    return gather_object(obj)


def run_plan(
    model: Any,
    plan: EncodePlan,
    *,
    image_root: Path,
    state: ProcessState | None = None,
    chunk_items: int = 1024,
    num_workers: int = 0,
    bar: Any = None,
    throughput: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Encode the plan's todo batches (sharded), save them to the cache, return float32 reps [N, H].

    `throughput`, when given, receives this process's figures (items, seconds, items_per_s,
    input_wait: the share of the time spent waiting for the DataLoader, gpu_util_pct)."""
    state = state or SingleProcess()
    world, rank = state.num_processes, state.process_index
    done: dict[str, torch.Tensor] = dict(plan.cached)
    param = next(iter(model.parameters()))
    max_length = getattr(getattr(model, "cfg", None), "max_length", None)
    batch_size = max(len(b) for b in plan.batches) if plan.batches else 1
    per_chunk = max(1, chunk_items // batch_size) * world
    chunks = [plan.todo[s : s + per_chunk][rank::world] for s in range(0, len(plan.todo), per_chunk)]
    # one loader for all of this process's batches, so its workers start once per side and dataset
    loader = DataLoader(
        _BatchInputs(
            [b for mine in chunks for b in mine],
            plan.items,
            image_root,
            model.processor,
            max_length,
            plan.source,
        ),
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_identity,
        pin_memory=PIN_MEMORY and param.device.type == "cuda",
        prefetch_factor=PREFETCH_FACTOR if num_workers > 0 else None,
    )
    start, wait, encoded, util = time.perf_counter(), 0.0, 0, []
    batches = iter(loader)
    for mine in chunks:
        local: list[tuple[list[int], torch.Tensor]] = []
        with torch.inference_mode():
            for _ in mine:
                t0 = time.perf_counter()
                batch, inputs = next(batches)
                wait += time.perf_counter() - t0
                if isinstance(inputs, DatasetError):
                    raise inputs
                reps = model.encode(move_batch(inputs, param.device, param.dtype))
                encoded += len(batch)
                if len(local) % 8 == 0:
                    util.append(gpu_utilization(param.device))
                if reps.shape[0] != len(batch):
                    raise RuntimeError(
                        f"model.encode returned {reps.shape[0]} reps for a batch of {len(batch)}"
                    )
                local.append((batch, reps.float().cpu()))
                if bar is not None:
                    bar.update(len(batch))
        gathered = _gather(local, state)  # every process takes part, even with no batch of its own
        idx = [i for batch, _ in gathered for i in batch]
        reps = torch.cat([r for _, r in gathered]) if gathered else torch.empty(0)
        if bar is not None:
            bar.update(len(idx) - sum(len(b) for b, _ in local))
        chunk_keys = [plan.keys[i] for i in idx]
        done.update(zip(chunk_keys, reps.unbind(0)))
        if plan.cache is not None and state.is_main_process and idx:
            plan.cache.save(chunk_keys, reps)
    if encoded:
        seconds = time.perf_counter() - start
        samples = [u for u in util if u is not None]
        figures = {
            "items": encoded,
            "seconds": seconds,
            "items_per_s": encoded / seconds,
            "input_wait": wait / seconds,
            "gpu_util_pct": sum(samples) / len(samples) if samples else None,
        }
        if throughput is not None:
            throughput.update(figures)
        gpu = f", GPU {figures['gpu_util_pct']:.0f}% busy" if samples else ""
        logger.info(
            "%s: %d items in %.1f s, %.1f items/s, %.0f%% of the time waiting for input%s",
            getattr(bar, "desc", None) or "encode", encoded, seconds, figures["items_per_s"],
            100 * figures["input_wait"], gpu,
        )  # fmt: skip
    if not plan.items:
        return torch.empty(0, 0)
    return torch.stack([done[k] for k in plan.keys])
