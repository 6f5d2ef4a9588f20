"""A MMEB-V2 task's queries and candidates as encoding items, each distinct item once.

A side's text is the task's instruction assembled by `mmeb_v2.prompts` with the MMEB placeholders the
backbones rewrite (`<|image_1|>`, `<|video_1|>`), where the reference puts its visual token. A video
is the frames `mmeb_v2.frames` selects from its folder (`eval.num_frames`, all of them for tasks read
whole); a page or a MomentSeeker query image is an image path. Paths are absolute, so the encoding
layer's image root plays no part. Every image and frame file's size and mtime go into the item keys,
so a replaced file is encoded afresh. Queries and candidates are deduplicated apart, as in V1.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..encoding import Item
from ..encoding.items import intern_item
from ..errors import DataNotFoundError
from ..mmeb_v2.frames import VideoRef, select_frames
from ..mmeb_v2.prompts import assemble, query_side, target_side
from ..mmeb_v2.records import TaskData
from ..mmeb_v2.video_readers import check_videos
from .mmeb_eval import file_stamp

#: the MMEB-style placeholders put where the reference puts its image / video token
PLACEHOLDERS = {"image": "<|image_1|>", "video": "<|video_1|>"}


@dataclass
class TaskItems:
    """Distinct items per side; `qry_index[q]` / `tgt_index[c]` point into them (candidates in
    `TaskData.candidates` order); `where` says, per item, the (row, column) it was first seen at."""

    qry_items: list[Item] = field(default_factory=list)
    tgt_items: list[Item] = field(default_factory=list)
    qry_index: list[int] = field(default_factory=list)
    tgt_index: list[int] = field(default_factory=list)
    qry_where: list[tuple[int, str]] = field(default_factory=list)
    tgt_where: list[tuple[int, str]] = field(default_factory=list)
    stamps: dict[str, str] = field(default_factory=dict)

    @property
    def num_items(self) -> int:
        return len(self.qry_items) + len(self.tgt_items)

    def index(self, side: str) -> np.ndarray:
        return np.asarray(self.qry_index if side == "qry" else self.tgt_index, dtype=np.int64)


def _stamp(stamps: dict[str, str], path: Path, what: str) -> str:
    key = str(path)
    if key not in stamps:
        stamp = file_stamp(path)
        if stamp is None:
            raise DataNotFoundError(f"{what}: file not found: {key!r}")
        stamps[key] = stamp
    return key


def _video(data: TaskData, folder: Path | None, ref: VideoRef, num_frames: int | None, stamps) -> tuple:
    if folder is None:
        return ()
    paths = select_frames(folder, ref, num_frames).paths
    return tuple(_stamp(stamps, p, ref.describe()) for p in paths)


def task_items(data: TaskData, num_frames: int) -> TaskItems:
    """Validate every video (naming task, row and video on a missing folder), then build the items."""
    frames = None if data.all_frames else num_frames
    if any(q.video is not None for q in data.queries) or any(
        c.video is not None for c in data.candidates.values()
    ):
        check_videos(data, frames)
    out = TaskItems()
    task, table_q, table_t = data.task.name, {}, {}
    for q in data.queries:
        ref = VideoRef(task, q.row, q.video_id)
        image = _stamp(out.stamps, q.image, ref.describe()) if q.image is not None else ""
        text = assemble(query_side(data.task, q), q.text, PLACEHOLDERS)
        item = Item(text, image, _video(data, q.video, ref, frames, out.stamps))
        out.qry_index.append(intern_item(table_q, out.qry_items, out.qry_where, item, (q.row, "query")))
    first_row = _first_rows(data)
    for name, cand in data.candidates.items():
        row = first_row.get(name, 0)
        ref = VideoRef(task, row, str(cand.video.name if cand.video else name))
        image = _stamp(out.stamps, cand.image, f"task {task!r}, page {name!r}") if cand.image else ""
        text = assemble(target_side(data.task, cand), cand.text, PLACEHOLDERS)
        item = Item(text, image, _video(data, cand.video, ref, frames, out.stamps))
        out.tgt_index.append(
            intern_item(table_t, out.tgt_items, out.tgt_where, item, (row, f"candidate {name!r}"))
        )
    return out


def _first_rows(data: TaskData) -> dict[Hashable, int]:
    """Row of the first query that lists or is judged against each candidate (0: none)."""
    rows: dict[Hashable, int] = {}
    for q in data.queries:
        for name in (*q.candidates, *q.relevant):
            rows.setdefault(name, q.row)
    return rows
