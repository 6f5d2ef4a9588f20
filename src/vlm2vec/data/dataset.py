"""A map-style dataset over several `PairSource`s that returns rows with their images and videos decoded.

Runs inside DataLoader workers. A video is a frame folder, whose frames are chosen as the MMEB-V2
reference does (`mmeb_v2.frames`: natural order, `num_video_frames` evenly spaced, all when fewer),
or a list of frame files, sampled the same way. A bad row (missing/unreadable image or frame, a
missing or empty frame folder, empty query, placeholders that do not match the images or videos, too
few hard negatives) raises `BadRowError` naming source, row and path;
with `skip_bad_rows` the row is replaced by the next good row of the same source (so batch shapes and
the data order of every other row stay fixed) and reported in the example's `skipped` list.

A row with several positives gives one of them (`multi_positive="sample"`: drawn from the seeded
generator keyed by (seed, step, global index), so a resumed run and every rank draw the same) or all
of them (`"all"`, for the loss that counts every positive).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..backbones.placeholders import check_placeholders
from ..errors import DataError
from ..mmeb_v2.frames import DEFAULT_NUM_FRAMES, VideoRef, select_frames
from .images import load_image
from .records import BadRowError, PairRecord, PairSource, Side

logger = logging.getLogger(__name__)

#: how many following rows a skipped row may look at for a replacement before giving up
MAX_REPLACEMENT_TRIES = 64


@dataclass
class LoadedSide:
    text: str
    images: list[Image.Image]
    paths: tuple[str, ...]  # with the text, the content identity used to mask false negatives
    videos: list[list[Image.Image]] = field(default_factory=list)  # each a list of frames


@dataclass
class Example:
    """One decoded training row: query, positive, `num_negatives` hard negatives."""

    source: str
    row: int
    qry: LoadedSide
    pos: LoadedSide
    negs: list[LoadedSide] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # messages of bad rows replaced by this one
    more_pos: list[LoadedSide] = field(default_factory=list)  # further positives (multi_positive "all")


class PairDataset(Dataset):
    """Global index (sources concatenated in order), or (global index, step) as `MixtureBatchSampler`
    yields them, -> `Example`. The step only seeds the choice among several positives (0 if absent)."""

    def __init__(
        self,
        sources: Sequence[PairSource],
        *,
        num_negatives: int = 0,
        skip_bad_rows: bool = False,
        num_video_frames: int | None = DEFAULT_NUM_FRAMES,
        multi_positive: str = "sample",
        seed: int = 0,
    ):
        if not sources:
            raise DataError("no training sources")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise DataError(f"training source names must be unique, got {names}")
        self.sources = list(sources)
        self.num_negatives = num_negatives
        self.skip_bad_rows = skip_bad_rows
        self.num_video_frames = num_video_frames
        self.multi_positive, self.seed = multi_positive, seed
        self.offsets = np.concatenate([[0], np.cumsum([len(s) for s in sources])[:-1]]).astype(np.int64)
        self._len = int(sum(len(s) for s in sources))

    def __len__(self) -> int:
        return self._len

    def locate(self, index: int) -> tuple[PairSource, int]:
        if not 0 <= index < self._len:
            raise IndexError(f"index {index} out of range (0..{self._len - 1})")
        i = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return self.sources[i], int(index - self.offsets[i])

    def _load_side(self, side: Side, source: str, row: int, what: str) -> LoadedSide:
        try:
            check_placeholders(side.text, len(side.images))
            check_placeholders(side.text, len(side.videos), kind="video")
        except ValueError as exc:
            raise BadRowError(source, row, f"{what}: {exc}") from None
        images = [load_image(p, source=source, row=row) for p in side.images]
        frame_paths = [self._frames(v, source, row, what) for v in side.videos]
        videos = [[load_image(p, source=source, row=row) for p in frames] for frames in frame_paths]
        paths = side.images + tuple(p for frames in frame_paths for p in frames)
        return LoadedSide(side.text, images, paths, videos)

    def _frames(self, video: str | tuple[str, ...], source: str, row: int, what: str) -> tuple[str, ...]:
        """The frame files of one video (a folder or a list of files), sampled to `num_video_frames`."""
        name = video if isinstance(video, str) else (video[0] if video else "")
        try:
            chosen = select_frames(video, VideoRef(source, row + 1, name), self.num_video_frames)
        except DataError as exc:
            raise BadRowError(source, row, f"{what} video: {exc}", name) from None
        return tuple(str(p) for p in chosen.paths)

    def load(self, record: PairRecord, draw: int = 0) -> Example:
        """Decode one record; raises `BadRowError` on any problem. With several positives, `sample`
        keeps positive `draw % count`, `all` keeps every one."""
        src, row = record.source, record.row
        positives = record.positives
        if self.multi_positive == "sample":
            positives = (positives[draw % len(positives)],)
        negs = []
        if self.num_negatives:
            if len(record.negs) < self.num_negatives:
                raise BadRowError(
                    src, row, f"has {len(record.negs)} hard negative(s), need {self.num_negatives}"
                )
            negs = [self._load_side(n, src, row, "negative") for n in record.negs[: self.num_negatives]]
        return Example(
            src,
            row,
            self._load_side(record.qry, src, row, "query"),
            self._load_side(positives[0], src, row, "target"),
            negs,
            more_pos=[self._load_side(p, src, row, f"positive {k + 2}") for k, p in enumerate(positives[1:])],
        )

    def __getitem__(self, key: int | tuple[int, int]) -> Example:
        index, step = key if isinstance(key, tuple) else (key, 0)
        source, row = self.locate(int(index))
        draw = int(np.random.default_rng([self.seed, int(step), int(index)]).integers(2**62))
        skipped: list[str] = []
        for attempt in range(min(MAX_REPLACEMENT_TRIES, len(source))):
            r = (row + attempt) % len(source)
            try:
                example = self.load(source.record(r), draw)
            except BadRowError as exc:
                if not self.skip_bad_rows:
                    raise
                logger.warning("skipping bad row: %s", exc)
                skipped.append(str(exc))
                continue
            example.skipped = skipped
            return example
        raise BadRowError(
            source.name,
            row,
            f"this row and the {len(skipped) - 1} following rows are all bad; last: {skipped[-1]}",
        )
