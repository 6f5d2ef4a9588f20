"""Batch inputs for encoding: images and video frames read and processed in DataLoader workers, ahead
of the model.

Images and a video item's frames (`Item.video`) are read and processed in DataLoader workers
(`num_workers`), which keep `PREFETCH_FACTOR` batches ready each; on CUDA the batches come in pinned
memory, so the host-to-device copy (`non_blocking`) overlaps the previous batch's forward. An image
or frame that cannot be decoded (truncated, corrupt) comes back as a `DatasetError` value naming the
dataset, the row and column where the item first appears, and the file; the encode loop raises it in
the main process, so its message stays one line instead of being wrapped in a worker traceback. A
batch without videos calls the processor exactly as before videos existed (no `videos=`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..errors import DatasetError
from .items import Item, ItemSource

#: batches each DataLoader worker keeps ready (torch's default is 2)
PREFETCH_FACTOR = 4
#: pin the processed batches in page-locked memory when the model is on CUDA
PIN_MEMORY = True


def load_image(root: Path, rel: str) -> Image.Image:
    """Open an image as RGB (alpha dropped), fully read so the file handle is closed."""
    with Image.open(root / rel) as im:
        return im.convert("RGB")


class _BatchInputs(Dataset):
    """Loads a batch's images and runs the processor; item i of the dataset is batch i."""

    def __init__(
        self,
        batches: list[list[int]],
        items: list[Item],
        image_root: Path,
        processor: Callable,
        max_length: int | None,
        source: ItemSource,
    ):
        self.batches, self.items, self.image_root = batches, items, image_root
        self.processor, self.max_length, self.source = processor, max_length, source

    def __len__(self) -> int:
        return len(self.batches)

    def _read(self, j: int, rel: str, what: str) -> Image.Image:
        try:
            return load_image(self.image_root, rel)
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for bad files
            raise DatasetError(
                f"{self.source.describe(j)}: cannot read {what} {str(self.image_root / rel)!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    def _image(self, j: int) -> list[Image.Image]:
        rel = self.items[j].image
        return [self._read(j, rel, "image")] if rel else []

    def _video(self, j: int) -> list[list[Image.Image]]:
        frames = self.items[j].video
        return [[self._read(j, rel, "video frame") for rel in frames]] if frames else []

    def __getitem__(self, i: int) -> tuple[list[int], dict[str, Any] | DatasetError]:
        batch = self.batches[i]
        texts = [self.items[j].text for j in batch]
        try:
            images = [self._image(j) for j in batch]
            videos = [self._video(j) for j in batch]
        except DatasetError as exc:
            return batch, exc
        media = {"videos": videos} if any(videos) else {}
        return batch, dict(self.processor(texts, images, max_length=self.max_length, **media))


def _identity(x: Any) -> Any:
    return x


def batch_loader(
    batches: list[list[int]],
    items: list[Item],
    source: ItemSource,
    *,
    model: Any,
    image_root: Path,
    device: torch.device,
    num_workers: int = 0,
) -> DataLoader:
    """One loader over all of this process's batches, so its workers start once per side and
    dataset; yields (batch, processor inputs or the `DatasetError` of an unreadable image)."""
    max_length = getattr(getattr(model, "cfg", None), "max_length", None)
    return DataLoader(
        _BatchInputs(batches, items, image_root, model.processor, max_length, source),
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_identity,
        pin_memory=PIN_MEMORY and device.type == "cuda",
        prefetch_factor=PREFETCH_FACTOR if num_workers > 0 else None,
    )
