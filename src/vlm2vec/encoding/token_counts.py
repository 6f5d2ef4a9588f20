"""Token counts of items before they are encoded, to cut batches by padded tokens (eval.batch_tokens).

A batch's cost is rows x its longest row, and an MMEB side mixes image rows (hundreds of tokens)
with short text rows, so batches are sized by an estimate of each item's tokens, known before any
image is decoded:

- text: the processor itself on the text with its image placeholders removed (tokenisation only,
  batched, no image work), so BOS, chat templates and `max_length` truncation count as they will;
- image: the processor's own count from the image size, read from the file header (`Image.open` is
  lazy: no pixel is decoded): every backbone processor has `num_image_tokens(image)` (Phi-3.5-V's HD
  crops, Qwen-VL's merged patches, LLaVA-NeXT's anyres tiles), called once per distinct size;
- video: the processor's `num_video_tokens(frames, size)` (Qwen-VL's temporal groups) from the frame
  count and the first frame's header, or, where the video's frames go in as images
  (`video_as_images`), the frame count times the first frame's image tokens.

The estimate decides the batch layout only, never a rep: it may be off by the odd token where a text
is tokenised around a placeholder. It is a pure function of the items, their image files and the
processor settings, so every process computes the same layout whatever the cache holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ..backbones.placeholders import MMEB_IMAGE_PLACEHOLDER, MMEB_VIDEO_PLACEHOLDER
from ..chunking import row_lengths
from ..config import ConfigError
from ..errors import DatasetError
from .items import Item

#: texts tokenised per processor call while counting
TEXT_BATCH = 256


def image_token_counter(processor: Any) -> Callable[[tuple[int, int]], int] | None:
    """(width, height) -> the tokens an image of that size takes under `processor` (its own
    `num_image_tokens(image)`, which reads only the size); None if the processor cannot say."""
    own = getattr(processor, "num_image_tokens", None)
    if not callable(own):
        return None
    return lambda size: int(own(Image.new("1", size)))


def video_token_counter(processor: Any) -> Callable[[int, tuple[int, int]], int] | None:
    """(frames, (width, height)) -> the tokens a video takes under `processor`: its own
    `num_video_tokens`, or the frames' image tokens when it takes a video's frames as images; None if
    it cannot say."""
    if getattr(processor, "video_as_images", False):
        image = image_token_counter(processor)
        return None if image is None else lambda frames, size: frames * image(size)
    own = getattr(processor, "num_video_tokens", None)
    return (lambda frames, size: int(own(frames, size))) if callable(own) else None


def image_size(root: Path, rel: str) -> tuple[int, int]:
    """(width, height) from the image file's header."""
    with Image.open(root / rel) as im:
        return im.size


def item_token_counts(
    processor: Callable,
    items: Sequence[Item],
    image_root: Path,
    max_length: int | None = None,
    describe: Callable[[int], str] | None = None,
) -> list[int]:
    """Estimated tokens (text + image) of each item, in item order; see the module docstring."""
    texts = [MMEB_VIDEO_PLACEHOLDER.sub("", MMEB_IMAGE_PLACEHOLDER.sub("", it.text)) for it in items]
    counts = [0] * len(items)
    if any(not t for t in texts):  # an image alone still gets the processor's BOS / template
        try:
            empty = row_lengths(processor([""], None, max_length=max_length))[0]
        except ValueError:  # "empty prompt": nothing beyond the image
            empty = 0
        counts = [0 if t else empty for t in texts]
    nonempty = [i for i, t in enumerate(texts) if t]
    for s in range(0, len(nonempty), TEXT_BATCH):
        part = nonempty[s : s + TEXT_BATCH]
        lengths = row_lengths(processor([texts[i] for i in part], None, max_length=max_length))
        for i, n in zip(part, lengths):
            counts[i] = n
    add_video_tokens(counts, processor, items, image_root, describe)
    with_images = [i for i, it in enumerate(items) if it.image]
    if not with_images:
        return counts
    counter = image_token_counter(processor)
    if counter is None:
        raise ConfigError(
            f"eval.batch_tokens: cannot count image tokens for processor {type(processor).__name__} "
            "(it has no num_image_tokens(image)); size batches by rows with eval.batch_tokens=null"
        )
    per_size: dict[tuple[int, int], int] = {}
    for i in with_images:
        size = _header_size(image_root, items[i].image, "image", i, describe)
        if size not in per_size:
            per_size[size] = counter(size)
        counts[i] += per_size[size]
    return counts


def _header_size(
    root: Path, rel: str, what: str, i: int, describe: Callable[[int], str] | None
) -> tuple[int, int]:
    try:
        return image_size(root, rel)
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        where = describe(i) if describe is not None else f"item {i}"
        raise DatasetError(
            f"{where}: cannot read {what} {str(root / rel)!r}: {type(exc).__name__}: {exc}"
        ) from None


def add_video_tokens(
    counts: list[int],
    processor: Any,
    items: Sequence[Item],
    root: Path,
    describe: Callable[[int], str] | None = None,
) -> None:
    """Add each video item's tokens to `counts` (in place), from its frame count and first frame."""
    with_videos = [i for i, it in enumerate(items) if it.video]
    if not with_videos:
        return
    counter = video_token_counter(processor)
    if counter is None:
        raise ConfigError(
            f"eval.batch_tokens: cannot count video tokens for processor {type(processor).__name__} "
            "(it has no num_video_tokens and does not take frames as images); size batches by rows "
            "with eval.batch_tokens=null"
        )
    per_shape: dict[tuple[int, tuple[int, int]], int] = {}
    for i in with_videos:
        shape = (len(items[i].video), _header_size(root, items[i].video[0], "video frame", i, describe))
        if shape not in per_shape:
            per_shape[shape] = counter(*shape)
        counts[i] += per_shape[shape]
