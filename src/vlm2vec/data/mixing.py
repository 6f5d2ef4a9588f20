"""Weighted mixing of sources into global batches: deterministic, reshuffled every epoch, resumable.

Semantics of a source weight `w`: in every epoch each source contributes `round(w * len(source))`
rows, drawn without replacement (so `w = 1` is every row once, `0.5` a fresh random half each epoch,
`2` every row twice). Those rows are shuffled together and cut into global batches (the incomplete
tail is dropped). With `per_source_batches` each source is shuffled and cut on its own and the
batches of all sources are then shuffled, so every global batch comes from one source, as in the
reference recipe (in-batch negatives then come from the same task).

The batch of global step `s` depends only on (seed, sizes, weights, batch size, mode, s): epoch
`s // steps_per_epoch` is rebuilt from `seed` and the epoch number, so a resumed run picks up at the
exact batch without replaying the data. In a distributed run rank `r` takes slice
`[r * B, (r + 1) * B)` of every global batch of `B * world_size` indices.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import DataError


class MixtureBatchSampler:
    """Yields this rank's list of global row indices for each step from `start_step` to `max_steps`.

    Global index = row + offset of its source (sources concatenated in the given order).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float],
        global_batch_size: int,
        *,
        seed: int = 0,
        per_source_batches: bool = False,
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
        self.sizes = [int(n) for n in sizes]
        self.weights = [float(w) for w in weights]
        self.names = list(names) if names is not None else [f"source{i}" for i in range(len(sizes))]
        self.global_batch_size = int(global_batch_size)
        self.per_rank = self.global_batch_size // num_replicas
        self.seed = int(seed)
        self.per_source_batches = per_source_batches
        self.num_replicas, self.rank = num_replicas, rank
        self.start_step = int(start_step)
        self.max_steps = max_steps
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.counts = [int(round(w * n)) for w, n in zip(self.weights, self.sizes)]
        self.steps_per_epoch = self._steps_per_epoch()
        if self.steps_per_epoch == 0:
            detail = ", ".join(f"{n}: {c}" for n, c in zip(self.names, self.counts))
            mode = " per source" if per_source_batches else ""
            raise DataError(
                f"not enough rows for one global batch of {global_batch_size}{mode} (rows per epoch: {detail})"
            )
        self._epoch_cache: tuple[int, np.ndarray] | None = None

    def _steps_per_epoch(self) -> int:
        if self.per_source_batches:
            return sum(c // self.global_batch_size for c in self.counts)
        return sum(self.counts) // self.global_batch_size

    def sources_without_batches(self) -> list[str]:
        """Sources too small to fill one global batch on their own (only matters per source)."""
        if not self.per_source_batches:
            return []
        return [n for n, c in zip(self.names, self.counts) if 0 < c < self.global_batch_size]

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
        g = self.global_batch_size
        if self.per_source_batches:
            chunks = []
            for i in range(len(self.sizes)):
                rows = rng.permutation(self._draw(rng, i))
                k = len(rows) // g
                if k:
                    chunks.append(rows[: k * g].reshape(k, g))
            batches = np.concatenate(chunks)
            batches = batches[rng.permutation(len(batches))]
        else:
            rows = np.concatenate([self._draw(rng, i) for i in range(len(self.sizes))])
            rows = rng.permutation(rows)
            batches = rows[: self.steps_per_epoch * g].reshape(self.steps_per_epoch, g)
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

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while self.max_steps is None or step < self.max_steps:
            yield self.local_batch(step)
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
            "per_source_batches": self.per_source_batches,
            "steps_per_epoch": self.steps_per_epoch,
        }

    def epochs(self, steps: int) -> float:
        return steps / self.steps_per_epoch  # never 0: __init__ refuses that
