"""Throughput of encoding: items/s, the share of the time spent waiting for input, GPU utilisation.

Every encode pass measures its own figures (`ThroughputMeter`); `combine_throughput` merges the
figures of every process and side into one dataset's (written to `throughput/<name>.json` by the
evaluation runner, apart from the results, since timings differ between runs and results must not);
`describe_throughput` renders them for the log.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

logger = logging.getLogger(__name__)

#: the GPU utilisation is sampled once every this many batches
GPU_SAMPLE_EVERY = 8


def gpu_utilization(device: torch.device) -> float | None:
    """The device's utilisation in percent over the driver's last sample period (None off CUDA or
    without pynvml)."""
    if device.type != "cuda":
        return None
    try:
        return float(torch.cuda.utilization(device))
    except Exception:  # pynvml missing or the driver query failed: the figure is simply not reported
        return None


class ThroughputMeter:
    """Counts one encode pass: items encoded, time waiting for input, GPU utilisation samples."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.start = time.perf_counter()
        self.wait = 0.0
        self.items = 0
        self.batches = 0
        self.util: list[float | None] = []

    def waited(self, since: float) -> None:
        """Count the time from `since` (a `time.perf_counter()` value) as waiting for input."""
        self.wait += time.perf_counter() - since

    def encoded(self, rows: int) -> None:
        """Count a batch of `rows` items as encoded (sampling the GPU every few batches)."""
        if self.batches % GPU_SAMPLE_EVERY == 0:
            self.util.append(gpu_utilization(self.device))
        self.batches += 1
        self.items += rows

    def figures(self) -> dict[str, Any] | None:
        """items, seconds, items_per_s, input_wait (share of the time), gpu_util_pct; None if
        nothing was encoded."""
        if not self.items:
            return None
        seconds = time.perf_counter() - self.start
        samples = [u for u in self.util if u is not None]
        return {
            "items": self.items,
            "seconds": seconds,
            "items_per_s": self.items / seconds,
            "input_wait": self.wait / seconds,
            "gpu_util_pct": sum(samples) / len(samples) if samples else None,
        }


def log_figures(what: str, figures: dict[str, Any]) -> None:
    """One log line: '<what>: N items in S s, R items/s, W% of the time waiting for input, GPU U% busy'."""
    util = figures["gpu_util_pct"]
    gpu = f", GPU {util:.0f}% busy" if util is not None else ""
    logger.info(
        "%s: %d items in %.1f s, %.1f items/s, %.0f%% of the time waiting for input%s",
        what, figures["items"], figures["seconds"], figures["items_per_s"], 100 * figures["input_wait"], gpu,
    )  # fmt: skip


def combine_throughput(per_process: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """One dataset's figures from each process's meter figures (one dict per side, empty where
    nothing was encoded): items summed, seconds of the slowest process (they run side by side),
    input wait as a share of all processes' time, GPU utilisation averaged over the processes."""
    items = seconds = 0.0
    wait, util, wall = 0.0, [], 0.0
    for sides in per_process:
        own = 0.0
        for f in sides:
            if not f:
                continue
            items += f["items"]
            own += f["seconds"]
            wait += f["input_wait"] * f["seconds"]
            if f.get("gpu_util_pct") is not None:
                util.append(f["gpu_util_pct"])
        seconds += own
        wall = max(wall, own)
    return {
        "items": int(items),
        "seconds": wall,
        "items_per_s": items / wall if wall else None,
        "input_wait": wait / seconds if seconds else None,
        "gpu_util_pct": sum(util) / len(util) if util else None,
        "processes": len(per_process),
    }


def describe_throughput(t: dict[str, Any]) -> str:
    """'123.4 items/s, 12% waiting for input, GPU 80% busy' (the parts that were measured)."""
    if not t.get("items_per_s"):
        return "nothing encoded"
    parts = [f"{t['items_per_s']:.1f} items/s", f"{100 * t['input_wait']:.0f}% waiting for input"]
    if t.get("gpu_util_pct") is not None:
        parts.append(f"GPU {t['gpu_util_pct']:.0f}% busy")
    return ", ".join(parts)
