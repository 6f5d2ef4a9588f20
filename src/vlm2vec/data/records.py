"""Training pairs as plain records, and table-backed sources that hand them out row by row.

Every training source (an MMEB-train subset, a custom JSONL/CSV/parquet file) becomes a `PairSource`:
a pyarrow table plus a column mapping. Rows are converted to `PairRecord`s only when asked for, so a
million-row mixture costs the arrow buffers and nothing per row in Python.

Rows are indexed from 0 in code and numbered from 1 in messages ("row 1" is a source's first row,
the first data line of a JSONL/CSV file). Image paths are joined onto the source's image root and
must stay under it (no absolute paths, no `../` out of it) unless `outside_root` allows them. A side
may also hold a video: a video cell is a frame folder (one path) or a list of frame files, resolved
like image paths; its frames are chosen when the row is loaded (`dataset`).

A row may hold several positives: its positive text cell is then a list (JSONL / parquet), one entry
per positive, and the positive image and video cells, when used, lists of the same length (entry k
belongs to positive k). An empty list is an error naming the file and row, found when the source is
opened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..backbones.placeholders import MMEB_IMAGE_PLACEHOLDER, MMEB_VIDEO_PLACEHOLDER
from ..errors import DataError, UserError


class BadRowError(UserError, ValueError):
    """A training row cannot be used (missing image, empty text, ...); the message names source, row
    (counted from 1) and path. `row` is the 0-based index."""

    def __init__(self, source: str, row: int | None = None, problem: str = "", path: str | None = None):
        self.source, self.row, self.problem, self.path = source, row, problem, path
        if row is None:  # rebuilt from its message alone (DataLoader workers re-raise that way)
            super().__init__(source)
            return
        where = f" (path: {path})" if path else ""
        super().__init__(f"source '{source}' row {row + 1}: {problem}{where}")


@dataclass(frozen=True)
class Side:
    """One side of a pair: text with `<|image_k|>` / `<|video_k|>` placeholders, the paths of its
    images and its videos (each a frame folder, or a tuple of frame files)."""

    text: str
    images: tuple[str, ...] = ()
    videos: tuple[str | tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class PairRecord:
    """A query, its positive target (and any further positives), optional hard negatives, and where
    it came from."""

    source: str
    row: int
    qry: Side
    pos: Side
    negs: tuple[Side, ...] = field(default_factory=tuple)
    more_pos: tuple[Side, ...] = field(default_factory=tuple)

    @property
    def positives(self) -> tuple[Side, ...]:
        return (self.pos, *self.more_pos)


@dataclass(frozen=True)
class ColumnMap:
    """Which table columns hold each field; image/negative columns are optional."""

    qry_text: str
    pos_text: str
    qry_image: str | None = None
    pos_image: str | None = None
    neg_text: str | None = None
    neg_image: str | None = None
    qry_video: str | None = None
    pos_video: str | None = None

    def used(self) -> list[str]:
        names = [self.qry_text, self.qry_image, self.pos_text, self.pos_image, self.neg_text, self.neg_image]
        return [n for n in [*names, self.qry_video, self.pos_video] if n]


def _as_list(value: Any) -> list[Any]:
    """A cell may hold nothing, one value or a list of values."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from CSV readers
        return ""
    return str(value)


class PairSource:
    """A named, weighted table of pairs. `record(i)` builds row i; nothing is loaded from disk here.

    `auto_placeholder`: prepend `<|image_1|>..<|image_n|>\\n` to a text whose row has images but no
    placeholders (convenient for custom captions files; MMEB rows always carry their placeholders).
    """

    def __init__(
        self,
        name: str,
        table: pa.Table,
        columns: ColumnMap,
        *,
        image_root: str | os.PathLike | None = None,
        weight: float = 1.0,
        origin: str = "",
        auto_placeholder: bool = False,
        outside_root: bool = False,
    ):
        missing = [c for c in columns.used() if c not in table.column_names]
        if missing:
            raise DataError(
                f"source '{name}' ({origin or 'table'}): missing column(s) {missing}; "
                f"available: {table.column_names}"
            )
        if weight < 0:
            raise DataError(f"source '{name}': weight must be >= 0, got {weight}")
        self.name = name
        self.origin = origin
        self.weight = float(weight)
        self.columns = columns
        self.image_root = Path(image_root) if image_root else None
        self.auto_placeholder = auto_placeholder
        self.outside_root = outside_root
        # one contiguous array per used column: O(1) row access, cheap to pickle into workers
        self._cols = {c: table.column(c).combine_chunks() for c in columns.used()}
        self._len = table.num_rows
        self._check_positive_lists()

    def _check_positive_lists(self) -> None:
        """A list of positives must not be empty (one-line error naming the file and row)."""
        column = self._cols[self.columns.pos_text]
        if not pa.types.is_list(column.type) and not pa.types.is_large_list(column.type):
            return
        empty = pc.equal(pc.list_value_length(column), 0)
        first = pc.index(empty, True).as_py()
        if first >= 0:
            raise DataError(
                f"source '{self.name}' ({self.origin or 'table'}) row {first + 1}: "
                f"'{self.columns.pos_text}' holds an empty list of positives"
            )

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"PairSource({self.name!r}, rows={self._len}, weight={self.weight}, origin={self.origin!r})"

    def _cell(self, column: str | None, row: int) -> Any:
        return None if column is None else self._cols[column][row].as_py()

    def _path(self, value: Any, row: int) -> str | None:
        text = _as_text(value).strip()
        if not text:
            return None
        if self.image_root is None:
            return text
        if self.outside_root:
            return text if os.path.isabs(text) else str(self.image_root / text)
        root = os.path.normpath(self.image_root)
        joined = os.path.normpath(os.path.join(root, text))
        if os.path.isabs(text) or os.path.commonpath([root, joined]) != root:
            raise BadRowError(
                self.name,
                row,
                f"image path is {'absolute' if os.path.isabs(text) else 'outside the image root'} "
                f"{root} (set data.image_paths_outside_root: true to allow)",
                text,
            )
        return joined

    def _video(self, value: Any, row: int) -> tuple[str | tuple[str, ...], ...]:
        """A video cell: nothing, a frame folder, or a list of frame files (one video)."""
        if isinstance(value, (list, tuple)):
            frames = tuple(p for p in (self._path(v, row) for v in value) if p is not None)
            return (frames,) if frames else ()
        folder = self._path(value, row)
        return (folder,) if folder is not None else ()

    def _side(self, text: Any, images: Any, row: int, video: Any = None) -> Side:
        paths = tuple(p for p in (self._path(v, row) for v in _as_list(images)) if p is not None)
        videos = self._video(video, row)
        text = _as_text(text)
        if self.auto_placeholder and videos and not MMEB_VIDEO_PLACEHOLDER.search(text):
            text = f"<|video_1|>\n{text}" if text else "<|video_1|>"
        if self.auto_placeholder and paths and not MMEB_IMAGE_PLACEHOLDER.search(text):
            marks = "".join(f"<|image_{k}|>" for k in range(1, len(paths) + 1))
            text = f"{marks}\n{text}" if text else marks
        return Side(text, paths, videos)

    def record(self, row: int) -> PairRecord:
        """Build row `row`; structural problems (empty query, empty target) raise `BadRowError`."""
        if not 0 <= row < self._len:
            raise IndexError(f"source '{self.name}': row {row} out of range (0..{self._len - 1})")
        c = self.columns
        qry = self._side(
            self._cell(c.qry_text, row), self._cell(c.qry_image, row), row, self._cell(c.qry_video, row)
        )
        positives = self._positives(row)
        if not qry.text.strip():
            raise BadRowError(self.name, row, "empty query text")
        for k, pos in enumerate(positives):
            if not pos.text.strip() and not pos.images and not pos.videos:
                which = f"positive {k + 1} is" if len(positives) > 1 else "target"
                raise BadRowError(self.name, row, f"empty {which} (no text and no image)")
        negs: list[Side] = []
        if c.neg_text or c.neg_image:
            neg_texts = [_as_text(t) for t in _as_list(self._cell(c.neg_text, row))]
            neg_images = _as_list(self._cell(c.neg_image, row))
            for k in range(max(len(neg_texts), len(neg_images))):
                text = neg_texts[k] if k < len(neg_texts) else ""
                image = neg_images[k] if k < len(neg_images) else None
                side = self._side(text, image, row)
                if side.text.strip() or side.images:
                    negs.append(side)
        return PairRecord(self.name, row, qry, positives[0], tuple(negs), positives[1:])

    def _positives(self, row: int) -> tuple[Side, ...]:
        """The row's positive, or its positives when the text cell holds a list."""
        c = self.columns
        texts, images, video = (self._cell(k, row) for k in (c.pos_text, c.pos_image, c.pos_video))
        if not isinstance(texts, (list, tuple)):
            return (self._side(texts, images, row, video),)
        for column, cell in ((c.pos_image, images), (c.pos_video, video)):
            if cell is not None and (not isinstance(cell, (list, tuple)) or len(cell) != len(texts)):
                raise BadRowError(
                    self.name,
                    row,
                    f"'{column}' must list one entry per positive ({len(texts)}), got {cell!r}",
                )
        return tuple(
            self._side(text, images[k] if images else None, row, video[k] if video else None)
            for k, text in enumerate(texts)
        )
