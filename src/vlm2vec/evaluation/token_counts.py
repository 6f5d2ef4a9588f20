"""Token counts of eval items before they are encoded, to cut batches by padded tokens (eval.batch_tokens).

A batch's cost is rows x its longest row, and an MMEB side mixes image rows (hundreds of tokens)
with short text rows, so batches are sized by an estimate of each item's tokens, known before any
image is decoded:

- text: the processor itself on the text with its image placeholders removed (tokenisation only,
  batched, no image work), so BOS, chat templates and `max_length` truncation count as they will;
- image: the processor's own count from the image size, read from the file header (`Image.open` is
  lazy: no pixel is decoded): `num_image_tokens(image)` where the processor has one (Phi-3.5-V), else
  transformers' own size formulas (Qwen-VL `get_number_of_image_patches` / merge², LLaVA-NeXT
  `_get_num_multimodal_tokens`), once per distinct size.

The estimate decides the batch layout only, never a rep: it may be off by the odd token where a text
is tokenised around a placeholder. It is a pure function of the items, their image files and the
processor settings, so every process computes the same layout whatever the cache holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ..backbones.base import MMEB_IMAGE_PLACEHOLDER
from ..chunking import row_lengths
from ..config import ConfigError
from .items import Item

#: texts tokenised per processor call while counting
TEXT_BATCH = 256


def image_token_counter(processor: Any) -> Callable[[tuple[int, int]], int] | None:
    """(width, height) -> the tokens an image of that size takes under `processor`; None if unknown."""
    own = getattr(processor, "num_image_tokens", None)
    if callable(own):  # Phi-3.5-V (and any processor that counts its own image tokens)
        return lambda size: int(own(Image.new("1", size)))
    hf = getattr(processor, "hf", None)
    if hf is not None and hasattr(hf, "_get_num_multimodal_tokens"):  # LLaVA-NeXT (resizes first)
        resize = getattr(processor, "resize", None)

        def llava(size: tuple[int, int]) -> int:
            w, h = resize or size
            return int(hf._get_num_multimodal_tokens(image_sizes=[[h, w]]).num_image_tokens[0])

        return llava
    images = getattr(processor, "image_processor", None)
    if images is not None and hasattr(images, "get_number_of_image_patches"):  # Qwen-VL
        merge = int(getattr(images, "merge_size", 2)) ** 2
        extra = 2 if getattr(processor, "prompt_format", None) == "native" else 0  # vision start / end

        def qwen(size: tuple[int, int]) -> int:
            return int(images.get_number_of_image_patches(size[1], size[0])) // merge + extra

        return qwen
    return None


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
            from .mmeb_eval import DatasetError

            where = describe(i) if describe is not None else f"item {i}"
            raise DatasetError(
                f"{where}: cannot read image {str(image_root / items[i].image)!r}: {type(exc).__name__}: {exc}"
            ) from None
        if size not in per_size:
            per_size[size] = counter(size)
        counts[i] += per_size[size]
    return counts
