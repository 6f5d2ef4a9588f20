"""Token counts of items before they are encoded, to cut batches by padded tokens (eval.batch_tokens).

A batch's cost is rows x its longest row, and an MMEB side mixes image rows (hundreds of tokens)
with short text rows, so batches are sized by an estimate of each item's tokens, known before any
image is decoded:

- text: the processor itself on the text with its image placeholders removed (tokenisation only,
  batched, no image work), so BOS, chat templates and `max_length` truncation count as they will;
- image: the processor's own count from the image size, read from the file header (`Image.open` is
  lazy: no pixel is decoded): every backbone processor has `num_image_tokens(image)` (Phi-3.5-V's HD
  crops, Qwen-VL's merged patches, LLaVA-NeXT's anyres tiles), called once per distinct size.

The estimate decides the batch layout only, never a rep: it may be off by the odd token where a text
is tokenised around a placeholder. It is a pure function of the items, their image files and the
processor settings, so every process computes the same layout whatever the cache holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ..backbones.placeholders import MMEB_IMAGE_PLACEHOLDER
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
    texts = [MMEB_IMAGE_PLACEHOLDER.sub("", it.text) for it in items]
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
        try:
            size = image_size(image_root, items[i].image)
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for bad files
            where = describe(i) if describe is not None else f"item {i}"
            raise DatasetError(
                f"{where}: cannot read image {str(image_root / items[i].image)!r}: {type(exc).__name__}: {exc}"
            ) from None
        if size not in per_size:
            per_size[size] = counter(size)
        counts[i] += per_size[size]
    return counts
