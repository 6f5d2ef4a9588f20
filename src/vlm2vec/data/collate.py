"""Turn decoded examples into processed query / target / negative batches, inside DataLoader workers.

Tokenising and image processing happen here (the collate function calls the backbone processor), so
the training step only moves tensors to the device. Alongside the tensors a batch carries content keys
(`vlm2vec.losses.content_key` of text + image paths, stable across processes) so the loss can mask
false negatives: two targets with the same key are the same content, whichever rank holds them.
With `all_positives` every positive of a row is a target row and `tgt_owner` says whose it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..losses import content_keys
from .dataset import Example, LoadedSide


def _keys(sides: Sequence[LoadedSide]) -> torch.Tensor:
    return content_keys((s.text, s.paths) for s in sides)


class PairCollator:
    """`collate(examples) -> batch` where the batch is a dict:

    - `qry`, `tgt`: processed batches (dict of tensors) for queries and positive targets;
    - `tgt_owner`: with `all_positives`, the row (query) of each target, LongTensor; else None;
    - `neg`: processed batch of the hard negatives (row i*k+j = negative j of query i) or None;
    - `qry_keys`, `tgt_keys` (and `neg_keys`): LongTensor content keys;
    - `num_tokens`: non-padding tokens over all sides; `skipped`: messages of bad rows replaced;
    - `rows`: (source, row) of every example, for error messages and data-order checks.
    """

    def __init__(
        self,
        processor: Callable[..., dict[str, torch.Tensor]],
        max_length: int | None = None,
        all_positives: bool = False,
    ):
        self.processor = processor
        self.max_length = max_length
        self.all_positives = all_positives

    def _process(self, sides: Sequence[LoadedSide]) -> dict[str, torch.Tensor]:
        texts = [s.text for s in sides]
        images = [s.images for s in sides]
        videos = [s.videos for s in sides]
        media = {"videos": videos} if any(videos) else {}  # a batch without videos: the call as ever
        return dict(
            self.processor(texts, images if any(images) else None, max_length=self.max_length, **media)
        )

    def __call__(self, examples: Sequence[Example]) -> dict[str, Any]:
        qry = [e.qry for e in examples]
        tgt = [p for e in examples for p in (e.pos, *e.more_pos)]
        owner = [i for i, e in enumerate(examples) for _ in range(1 + len(e.more_pos))]
        negs = [n for e in examples for n in e.negs]
        batch: dict[str, Any] = {
            "qry": self._process(qry),
            "tgt": self._process(tgt),
            "neg": self._process(negs) if negs else None,
            "qry_keys": _keys(qry),
            "tgt_keys": _keys(tgt),
            "tgt_owner": torch.tensor(owner, dtype=torch.long) if self.all_positives else None,
            "neg_keys": _keys(negs) if negs else None,
            "rows": [(e.source, e.row) for e in examples],
            "skipped": [m for e in examples for m in e.skipped],
        }
        batch["num_tokens"] = sum(
            int(side["attention_mask"].sum())
            for side in (batch["qry"], batch["tgt"], batch["neg"])
            if side is not None
        )
        return batch
