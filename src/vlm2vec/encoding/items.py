"""Distinct items: what is encoded (a text and an image), its cache key, and the deduplication that
encodes every distinct (text, image) of a dataset once.

Candidates repeat heavily across queries (a classification dataset's candidates are its class names),
so the naive `queries + queries x candidates` encodings shrink to a small fraction. Queries and
candidates are deduplicated separately: they are encoded in separate passes because their instructions
(and so their lengths and batch neighbours) differ, and keeping the sides apart keeps that true for
encoders that treat the sides differently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Item:
    """A text with MMEB placeholders, an image path relative to the image root ('' = no image) and a
    video as its selected frame files (() = no video)."""

    text: str
    image: str = ""
    video: tuple[str, ...] = ()


def item_key(item: Item, image_stamp: str = "", video_stamps: Sequence[str] = ()) -> str:
    """Content key of an item for the cache: a hash of its text, its image path and the image file's
    size and mtime (`image_stamp`, "size:mtime_ns"), so a replaced image file is encoded afresh; a
    video adds its frame paths and their stamps (an item without video keeps the key it had before).

    The model side of the cache key is the model fingerprint, kept in the cache folder's name.
    """
    digest = hashlib.sha1(
        item.text.encode("utf-8") + b"\0" + item.image.encode("utf-8") + b"\0" + image_stamp.encode()
    )
    if item.video:
        digest.update(
            b"\0video\0" + "\n".join(item.video).encode("utf-8") + b"\0" + "\n".join(video_stamps).encode()
        )
    return digest.hexdigest()


class Example(Protocol):
    """A query and its candidates, as an MMEB-eval row holds them (`evaluation.EvalExample`)."""

    qry_text: str
    qry_img: str
    tgt_texts: Sequence[str]
    tgt_imgs: Sequence[str]


@dataclass
class ItemSource:
    """Where a side's items come from, for error messages: dataset and each item's (row, column)."""

    dataset: str = ""
    where: list[tuple[int, str]] = field(default_factory=list)

    def describe(self, i: int) -> str:
        row, column = self.where[i] if i < len(self.where) else (None, None)
        return f"dataset {self.dataset!r}, row {row}, column {column!r}"

    def subset(self, rows: list[int]) -> ItemSource:
        """This source re-indexed: item i of the subset is item `rows[i]` here (a shard of a corpus)."""
        return SubsetItemSource(parent=self, rows=rows)


@dataclass
class SubsetItemSource(ItemSource):
    """An `ItemSource` over a selection of another's items, so messages still name the original row."""

    parent: ItemSource | None = None
    rows: list[int] = field(default_factory=list)

    def describe(self, i: int) -> str:
        return self.parent.describe(self.rows[i]) if self.parent is not None else super().describe(i)


@dataclass
class DedupedDataset:
    """Distinct query / candidate items and, per query, indices into them."""

    qry_items: list[Item]
    tgt_items: list[Item]
    qry_index: np.ndarray  # [Q] index of each query's item in qry_items
    tgt_index: list[np.ndarray]  # per query: index of each candidate's item in tgt_items
    #: per item, the (row, image column) where it first appears: error messages name them
    qry_where: list[tuple[int, str]] = field(default_factory=list)
    tgt_where: list[tuple[int, str]] = field(default_factory=list)

    @property
    def num_queries(self) -> int:
        return len(self.qry_index)

    @property
    def naive_slots(self) -> int:
        """Encodings a per-(query, candidate) evaluator would run."""
        return self.num_queries + sum(len(c) for c in self.tgt_index)

    @property
    def num_items(self) -> int:
        return len(self.qry_items) + len(self.tgt_items)


def intern_item(
    table: dict[Item, int], items: list[Item], where: list[tuple[int, str]], item: Item, at: tuple[int, str]
) -> int:
    """Index of `item` in `items`, appended (with where it first appears) when new."""
    idx = table.get(item)
    if idx is None:
        idx = table[item] = len(items)
        items.append(item)
        where.append(at)
    return idx


def dedup_examples(examples: Sequence[Example]) -> DedupedDataset:
    """Map queries and candidates to their distinct items, keeping first-seen order."""
    qry_table: dict[Item, int] = {}
    tgt_table: dict[Item, int] = {}
    qry_items: list[Item] = []
    tgt_items: list[Item] = []
    qry_where: list[tuple[int, str]] = []  # (1-based row, column) where each item was first seen
    tgt_where: list[tuple[int, str]] = []
    qry_index = np.empty(len(examples), dtype=np.int64)
    tgt_index: list[np.ndarray] = []
    for q, ex in enumerate(examples):
        qry_index[q] = intern_item(
            qry_table, qry_items, qry_where, Item(ex.qry_text, ex.qry_img), (q + 1, "qry_img_path")
        )
        tgt_index.append(
            np.array(
                [
                    intern_item(tgt_table, tgt_items, tgt_where, Item(t, p), (q + 1, f"tgt_img_path[{j}]"))
                    for j, (t, p) in enumerate(zip(ex.tgt_texts, ex.tgt_imgs))
                ],
                dtype=np.int64,
            )
        )
    return DedupedDataset(qry_items, tgt_items, qry_index, tgt_index, qry_where, tgt_where)
