"""GradCache keeps no second copy of the batch: a chunk's input copy lives only through its own pass,
so the copies alive at once are one chunk's worth whatever the global batch."""

from __future__ import annotations

import sys
import weakref
from pathlib import Path

from vlm2vec.gradcache import GradCache, split_batch
from vlm2vec.losses import ContrastiveLoss

sys.path.insert(0, str(Path(__file__).parent / "dist_scripts"))
from toy import make_batch, make_model  # noqa: E402


class LiveCopies:
    """A split function counting the chunk input tensors alive at once (each until it is freed)."""

    def __init__(self) -> None:
        self.alive = self.peak = 0

    def split(self, inputs, plan):
        parts = split_batch(inputs, plan)
        for part in parts:
            for value in part.values():
                self.alive += 1
                self.peak = max(self.peak, self.alive)
                weakref.finalize(value, self._free)
        return parts

    def _free(self) -> None:
        self.alive -= 1


def _peak_copies(rows: int) -> int:
    copies = LiveCopies()
    step = GradCache(ContrastiveLoss(0.05), 4, 4, split_fn=copies.split)
    step.step(make_model(), make_batch(rows, seed=1), make_batch(rows, seed=2))
    assert copies.alive == 0  # nothing left once the step is done
    return copies.peak


def test_chunk_input_copies_alive_at_once_stay_one_chunk_as_the_batch_grows():
    one_chunk = 3  # input_ids, attention_mask, pixel_values of one chunk
    assert _peak_copies(8) == _peak_copies(64) == one_chunk
