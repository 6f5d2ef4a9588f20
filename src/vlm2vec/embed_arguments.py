"""The checks of `EmbeddingModel.embed`'s arguments, before any pixel or token work: a library caller
who passes file paths instead of images, one video where a list of videos belongs, or lists of other
lengths gets an `ArgumentError` (a `ValueError`) naming the argument and the position, not a
traceback from deep inside a processor.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from .errors import ArgumentError


def _kind(value: Any) -> str:
    return type(value).__name__


def _check_images(images: Any, where: str) -> None:
    """One row's images: None, a PIL image, or a list of PIL images (None entries allowed)."""
    if images is None or isinstance(images, Image.Image):
        return
    if not isinstance(images, (list, tuple)):
        raise ArgumentError(f"{where} must be a PIL image or a list of PIL images, got a {_kind(images)}")
    for i, image in enumerate(images):
        if image is not None and not isinstance(image, Image.Image):
            hint = " (open image files with PIL.Image.open)" if isinstance(image, str) else ""
            raise ArgumentError(f"{where}[{i}] must be a PIL image, got a {_kind(image)}{hint}")


def _check_videos(videos: Any, where: str) -> None:
    """One row's videos: None, or a list of videos, each a list of PIL frames."""
    if videos is None:
        return
    if not isinstance(videos, (list, tuple)):
        raise ArgumentError(
            f"{where} must be a list of videos (each a list of PIL frames), got a {_kind(videos)}"
        )
    for i, video in enumerate(videos):
        if not isinstance(video, (list, tuple)) or not video:
            raise ArgumentError(
                f"{where}[{i}] must be a video: a non-empty list of PIL frames, got a {_kind(video)}"
            )
        for j, frame in enumerate(video):
            if not isinstance(frame, Image.Image):
                raise ArgumentError(f"{where}[{i}][{j}] must be a PIL image (a frame), got a {_kind(frame)}")


def _check_rows(name: str, value: Any, rows: int) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise ArgumentError(f"{name} must be a list with one entry per text, got a {_kind(value)}")
    if len(value) != rows:
        raise ArgumentError(
            f"{name} has {len(value)} entries for {rows} texts: give one per text (None: none)"
        )
    return list(value)


def check_embed_arguments(texts: Any, images: Any, videos: Any, batch_size: Any) -> None:
    """`ArgumentError` naming the first bad argument of `EmbeddingModel.embed` (and its position);
    `dim` is checked where reps are cut (`matryoshka.truncate_reps`)."""
    if isinstance(texts, str):
        _check_images(images, "images")
        _check_videos(videos, "videos")
    else:
        if not isinstance(texts, (list, tuple)):
            raise ArgumentError(f"texts must be a string or a list of strings, got a {_kind(texts)}")
        if not texts:
            raise ArgumentError("texts is empty: give at least one text")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ArgumentError(f"texts[{i}] must be a string, got a {_kind(text)}")
        if images is not None:
            for i, row in enumerate(_check_rows("images", images, len(texts))):
                _check_images(row, f"images[{i}]")
        if videos is not None:
            for i, row in enumerate(_check_rows("videos", videos, len(texts))):
                _check_videos(row, f"videos[{i}]")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ArgumentError(f"batch_size must be an int >= 1, got {batch_size!r}")


__all__ = ["check_embed_arguments"]
