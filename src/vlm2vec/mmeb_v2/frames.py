"""Which frames of a released frame folder a video item is made of, chosen as the reference evaluator does.

The MMEB-V2 release ships every video as a folder of at most 64 extracted frames. The reference lists
the folder's `.jpg`/`.jpeg`/`.png` files in natural order (digit runs compared as numbers, so
`frame_2` comes before `frame_10`), then keeps `num_frames` (8) of them at the indices
``int(linspace(0, n - 1, num_frames))``; a folder with fewer frames is used whole, never padded. The
published numbers depend on exactly these frames, so this module is the one place that picks them.
A missing or empty folder is an error naming the task, the row (1-based), the video id and the path
searched, where the reference would try to re-extract frames from a raw video that is not there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError, DataNotFoundError

#: frame file suffixes the reference lists (compared case-insensitively)
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
#: frames per video in every MMEB-V2 video task (paper §4.1.2, `num_frames: 8`)
DEFAULT_NUM_FRAMES = 8

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[str | int, ...]:
    """Sort key comparing digit runs as numbers: `frame_2` < `frame_10`. Text and number parts
    alternate at fixed positions, so two keys never compare a string with an int."""
    parts = _DIGITS.split(name)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def sample_indices(num_available: int, num_frames: int | None = DEFAULT_NUM_FRAMES) -> list[int]:
    """Indices kept of `num_available` frames: `num_frames` evenly spaced ones (linspace from the first
    to the last, truncated to int) when there are at least that many, else all; None keeps all."""
    if num_available < 0:
        raise ValueError(f"num_available must be >= 0, got {num_available}")
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be >= 1 or None, got {num_frames}")
    if num_frames is None or num_available <= num_frames:
        return list(range(num_available))
    return [int(x) for x in np.linspace(0, num_available - 1, num_frames)]


def list_frames(folder: str | os.PathLike) -> list[Path]:
    """The frame files of `folder` in natural order (no check that the folder exists)."""
    files = [p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
    return sorted(files, key=lambda p: natural_key(p.name))


@dataclass(frozen=True)
class VideoRef:
    """Where a video item came from, for error messages: task name, 1-based row and video id."""

    task: str
    row: int
    video_id: str

    def describe(self) -> str:
        return f"task {self.task!r}, row {self.row}, video {self.video_id!r}"


@dataclass(frozen=True)
class FrameSelection:
    """The frames chosen for one video and how many the source offered (to count short videos)."""

    paths: tuple[Path, ...]
    available: int

    def is_short(self, num_frames: int | None = DEFAULT_NUM_FRAMES) -> bool:
        """True when the source had fewer frames than asked for (all of them are used)."""
        return num_frames is not None and self.available < num_frames


def select_frames(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    ref: VideoRef,
    num_frames: int | None = DEFAULT_NUM_FRAMES,
) -> FrameSelection:
    """Pick the frames of a video given as a frame folder or as a list of frame files.

    A folder is listed in natural order; a list is taken in the order given (it is the caller's
    record of the video). A missing folder, an empty one or an empty list raises `DataError` naming
    `ref` and the path searched; a listed file that does not exist raises naming that file.
    """
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise DataNotFoundError(f"{ref.describe()}: frame folder not found: {str(folder)!r}")
        frames = list_frames(folder)
        if not frames:
            raise DataError(
                f"{ref.describe()}: frame folder {str(folder)!r} holds no {'/'.join(FRAME_SUFFIXES)} files"
            )
    else:
        frames = [Path(p) for p in source]
        if not frames:
            raise DataError(f"{ref.describe()}: empty list of frame files")
        for path in frames:
            if not path.is_file():
                raise DataNotFoundError(f"{ref.describe()}: frame file not found: {str(path)!r}")
    keep = sample_indices(len(frames), num_frames)
    return FrameSelection(tuple(frames[i] for i in keep), len(frames))


def load_frame(path: str | os.PathLike) -> Image.Image:
    """Decode one frame (or page) as RGB; an unreadable file raises `DataError` naming it."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"unreadable image file {str(path)!r}: {exc}") from exc


def load_frames(selection: FrameSelection) -> list[Image.Image]:
    """Decode the selected frames in order."""
    return [load_frame(p) for p in selection.paths]
