"""Weighted mixing of sources into global batches made of same-source runs: deterministic, reshuffled
every epoch, resumable.

Semantics of a source weight `w`: in every epoch each source contributes `round(w * len(source))`
rows, drawn without replacement (so `w = 1` is every row once, `0.5` a fresh random half each epoch,
`2` every row twice); with `weight_mode="share"` a weight is instead the source's share of the
epoch, `w / sum(w)` of all sources' rows together (the reference's sampling weights). Each source's rows of the epoch are cut into runs of `run_length` (S) rows (a
tail shorter than S is dropped), the runs of all sources are shuffled together, and consecutive runs
fill the global batches (S divides the global batch G). A run's source is thus drawn in proportion to
the rows each source brings to the epoch. S = 1 is i.i.d. rows (every row's source drawn on its own);
S = G puts every global batch on one source (in-batch negatives from one task); in between, a batch
holds G / S runs, as the VLM2Vec-V2 "interleaved sub-batches" (the presets of `data.sub_batch`:
`config.DataConfig.run_length`).

The batch of global step `s` depends only on (seed, sizes, weights, G, S, s): epoch
`s // steps_per_epoch` is rebuilt from `seed` and the epoch number, so a resumed run picks up at the
exact batch without replaying the data. Batches are built whole, before any rank or DataLoader worker
sees them: rank `r` takes slice `[r * B, (r + 1) * B)` of every global batch of `B * world_size`
indices, and workers only decode the rows they are given, so the batches are the same for any number
of processes and workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import DataError


def rows_per_epoch(sizes: Sequence[int], weights: Sequence[float], weight_mode: str = "rows") -> list[int]:
    """Rows each source brings to an epoch: `rows`: w x its rows; `share`: w / sum(w) of all sources'
    rows together (the reference's sampling weights: a source's share does not follow its size)."""
    if weight_mode == "share":
        total, weight_sum = sum(sizes), sum(weights)
        return [int(round(w / weight_sum * total)) for w in weights]
    return [int(round(w * n)) for w, n in zip(weights, sizes)]


class MixtureBatchSampler:
    """Yields this rank's rows of each step from `start_step` to `max_steps`, as (global index, step)
    pairs: the step seeds what a row draws when it is loaded (one of several positives).

    Global index = row + offset of its source (sources concatenated in the given order).
    `run_length`: rows per same-source run (1: i.i.d. rows; the global batch: one source per batch).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float],
        global_batch_size: int,
        *,
        seed: int = 0,
        run_length: int = 1,
        weight_mode: str = "rows",
        num_replicas: int = 1,
        rank: int = 0,
        start_step: int = 0,
        max_steps: int | None = None,
        names: Sequence[str] | None = None,
    ):
        if len(sizes) != len(weights) or not sizes:
            raise DataError(f"need one weight per source, got {len(sizes)} sizes and {len(weights)} weights")
        if global_batch_size % num_replicas:
            raise DataError(f"global batch {global_batch_size} is not divisible by {num_replicas} processes")
        if not 0 <= rank < num_replicas:
            raise DataError(f"rank {rank} outside 0..{num_replicas - 1}")
        if run_length < 1 or global_batch_size % run_length:
            raise DataError(f"run length {run_length} does not divide the global batch {global_batch_size}")
        self.sizes = [int(n) for n in sizes]
        self.weights = [float(w) for w in weights]
        self.names = list(names) if names is not None else [f"source{i}" for i in range(len(sizes))]
        self.global_batch_size = int(global_batch_size)
        self.per_rank = self.global_batch_size // num_replicas
        self.seed = int(seed)
        self.run_length = int(run_length)
        self.num_replicas, self.rank = num_replicas, rank
        self.start_step = int(start_step)
        self.max_steps = max_steps
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.weight_mode = weight_mode
        self.counts = rows_per_epoch(self.sizes, self.weights, weight_mode)
        runs_per_batch = self.global_batch_size // self.run_length
        self.steps_per_epoch = sum(c // self.run_length for c in self.counts) // runs_per_batch
        if self.steps_per_epoch == 0:
            detail = ", ".join(f"{n}: {c}" for n, c in zip(self.names, self.counts))
            runs = f" in runs of {self.run_length}" if self.run_length > 1 else ""
            raise DataError(
                f"not enough rows for one global batch of {global_batch_size}{runs} (rows per epoch: {detail})"
            )
        self._epoch_cache: tuple[int, np.ndarray] | None = None

    def sources_without_batches(self) -> list[str]:
        """Sources with rows but too few of them for one run: they are never used."""
        return [n for n, c in zip(self.names, self.counts) if 0 < c < self.run_length]

    def _draw(self, rng: np.random.Generator, i: int) -> np.ndarray:
        """This epoch's rows of source i (global indices), `counts[i]` of them, without replacement."""
        n, count = self.sizes[i], self.counts[i]
        parts = [rng.permutation(n) for _ in range(count // n)] if n else []
        rest = count - n * len(parts)
        if rest:
            parts.append(rng.permutation(n)[:rest])
        rows = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return rows.astype(np.int64) + self.offsets[i]

    def epoch_batches(self, epoch: int) -> np.ndarray:
        """All global batches of `epoch` as an array [steps_per_epoch, global_batch_size]."""
        if self._epoch_cache is not None and self._epoch_cache[0] == epoch:
            return self._epoch_cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        s = self.run_length
        runs = []
        for i in range(len(self.sizes)):
            rows = self._draw(rng, i)
            if s > 1:  # which rows share a run; with runs of one row the shuffle below does this
                rows = rng.permutation(rows)
            k = len(rows) // s
            runs.append(rows[: k * s].reshape(k, s))
        pool = np.concatenate(runs)
        pool = pool[rng.permutation(len(pool))]
        steps, g = self.steps_per_epoch, self.global_batch_size
        batches = pool[: steps * (g // s)].reshape(steps, g)
        self._epoch_cache = (epoch, batches)
        return batches

    def global_batch(self, step: int) -> list[int]:
        """The full global batch of step `step` (every rank's rows)."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        return self.epoch_batches(epoch)[pos].tolist()

    def local_batch(self, step: int) -> list[int]:
        batch = self.global_batch(step)
        return batch[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]

    def locate(self, index: int) -> tuple[int, int]:
        """Global index -> (source number, row)."""
        i = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return i, int(index - self.offsets[i])

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while self.max_steps is None or step < self.max_steps:
            yield [(i, step) for i in self.local_batch(step)]
            step += 1

    def __len__(self) -> int:
        if self.max_steps is None:
            raise TypeError("an endless sampler has no length; set max_steps")
        return max(0, self.max_steps - self.start_step)

    def state_dict(self) -> dict[str, Any]:
        """What fixes the data order; stored in checkpoints and compared on resume."""
        return {
            "seed": self.seed,
            "sizes": dict(zip(self.names, self.sizes)),
            "weights": dict(zip(self.names, self.weights)),
            "global_batch_size": self.global_batch_size,
            "run_length": self.run_length,
            "weight_mode": self.weight_mode,
            "steps_per_epoch": self.steps_per_epoch,
        }

    def epochs(self, steps: int) -> float:
        return steps / self.steps_per_epoch  # never 0: __init__ refuses that
