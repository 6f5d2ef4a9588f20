"""Phi-3.5-V processor: the HD image transform and the prompt layout, written from the published facts.

Why a hand-written processor: the official one is remote code. Embeddings of the released checkpoints
depend on its exact behaviour, so this module reproduces it (REFERENCE.md §5):

* HD transform: a portrait image is transposed, resized (long side = s * crop) and padded with white,
  centred, to a multiple of the crop size; tiles are cut row by row and a bicubic thumbnail of the
  normalised padded image (no antialiasing) goes first. Pixel tensors are padded with zero crops to
  `num_crops + 1`; the model never runs CLIP on those.
* Prompt: the text is split at the `<|image_k|>` placeholders and every piece is tokenised on its own,
  with BOS; image k's N_k positions go where its placeholder stood. Image positions carry the id `-k`
  (the official convention), so the model finds them without an extra mask.

Output layout (per row, so that any slice `t[i:j]` over the batch dimension stays consistent):
`input_ids`/`attention_mask` [B, T]; with images, `pixel_values` [B, M, num_crops + 1, 3, S, S] and
`image_sizes` [B, M, 2] (padded [H, W], zeros where a row has fewer than M images).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .base import (
    ImagesInput,
    TextInput,
    pad_rows,
    to_rgb,
)
from .media import VideosInput, prepare_media
from .placeholders import expand_within_budget, media_expansion, split_at_placeholders

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def hd_scale(width: int, height: int, num_crops: int) -> int:
    """Largest integer s with s * ceil(s / ratio) <= num_crops, ratio = long side / short side."""
    long_side, short_side = max(width, height), min(width, height)
    ratio = long_side / short_side
    scale = 1
    while (scale + 1) * math.ceil((scale + 1) / ratio) <= num_crops:
        scale += 1
    return scale


def hd_padded_size(width: int, height: int, num_crops: int, crop_size: int = 336) -> tuple[int, int]:
    """Padded [H, W] of the HD image (what `image_sizes` reports)."""
    transposed = width < height
    long_side, short_side = (height, width) if transposed else (width, height)
    new_long = hd_scale(width, height, num_crops) * crop_size
    new_short = max(1, int(new_long / (long_side / short_side)))
    padded_short = math.ceil(new_short / crop_size) * crop_size
    return (new_long, padded_short) if transposed else (padded_short, new_long)


def num_image_tokens(padded_h: int, padded_w: int, crop_size: int = 336, tokens_per_side: int = 12) -> int:
    """N = (h_c * w_c + 1) * m^2 + 1 + (h_c + 1) * m, with m merged tokens per crop side (12 for Phi-3.5-V)."""
    h_c, w_c = padded_h // crop_size, padded_w // crop_size
    m = tokens_per_side
    return (h_c * w_c + 1) * m * m + 1 + (h_c + 1) * m


def hd_image(image: Image.Image, num_crops: int, crop_size: int = 336) -> Image.Image:
    """Resize and white-pad an RGB image into the HD canvas (still a PIL image, before normalisation)."""
    width, height = image.size
    transposed = width < height
    if transposed:
        image = image.transpose(Image.Transpose.TRANSPOSE)
        width, height = image.size
    new_w = hd_scale(width, height, num_crops) * crop_size
    new_h = max(1, int(new_w / (width / height)))
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    padded_h = math.ceil(new_h / crop_size) * crop_size
    top = int((padded_h - new_h) / 2)
    canvas = Image.new("RGB", (new_w, padded_h), (255, 255, 255))
    canvas.paste(image, (0, top))
    if transposed:
        canvas = canvas.transpose(Image.Transpose.TRANSPOSE)
    return canvas


def normalize(image: Image.Image, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """PIL RGB -> float tensor [3, H, W], scaled to [0, 1] and normalised per channel."""
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (array - mean_t) / std_t


def image_crops(
    image: Image.Image,
    num_crops: int,
    crop_size: int = 336,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """One image -> (crops [1 + h_c * w_c, 3, S, S] with the thumbnail first, padded (H, W))."""
    hd = normalize(hd_image(to_rgb(image), num_crops, crop_size), mean, std)
    _, height, width = hd.shape
    h_c, w_c = height // crop_size, width // crop_size
    thumb = F.interpolate(hd[None], size=(crop_size, crop_size), mode="bicubic", align_corners=False)
    tiles = (
        hd.view(3, h_c, crop_size, w_c, crop_size).permute(1, 3, 0, 2, 4).reshape(-1, 3, crop_size, crop_size)
    )
    return torch.cat([thumb, tiles], dim=0), (height, width)


class Phi3VProcessor:
    """Callable processor: `processor(texts, images=None, max_length=None, padding_side="right")`.

    `max_length` counts text tokens only (BOS included); image positions are never cut. `None` uses
    the default given at construction (the model config's `max_length`), which may itself be None.
    """

    def __init__(
        self,
        tokenizer: Any,
        num_crops: int = 4,
        crop_size: int = 336,
        patch_size: int = 14,
        image_mean: Sequence[float] = CLIP_MEAN,
        image_std: Sequence[float] = CLIP_STD,
        max_length: int | None = None,
        video_as_images: bool = False,
    ) -> None:
        grid = crop_size // patch_size
        if crop_size % patch_size or grid % 2:
            raise ValueError(
                f"crop {crop_size} / patch {patch_size} must give an even patch grid for the 2x2 merge"
            )
        self.tokenizer = tokenizer
        self.num_crops = num_crops
        self.crop_size = crop_size
        self.patch_size = patch_size
        self.tokens_per_side = grid // 2
        self.image_mean = tuple(image_mean)
        self.image_std = tuple(image_std)
        self.max_length = max_length
        self.video_as_images = video_as_images
        if tokenizer.pad_token_id is None:
            raise ValueError(
                "the Phi-3.5-V tokenizer needs a pad token (<|endoftext|> in the official files)"
            )

    # -------------------------------------------------------------------------------------------- images
    def num_image_tokens(self, image: Image.Image) -> int:
        """Tokens image `image` takes in the prompt under this processor's `num_crops`."""
        h, w = hd_padded_size(image.size[0], image.size[1], self.num_crops, self.crop_size)
        return num_image_tokens(h, w, self.crop_size, self.tokens_per_side)

    # ---------------------------------------------------------------------------------------------- text
    def _image_row_ids(self, text: str, sizes: list[tuple[int, int]], max_length: int | None) -> list[int]:
        """Split at placeholders, tokenise every piece with BOS, insert `-k` x N_k for image k."""
        texts, found = split_at_placeholders(text)
        encoded = self.tokenizer(texts, add_special_tokens=True)["input_ids"]
        expansions = [
            media_expansion(
                -p.number, num_image_tokens(*sizes[p.number - 1], self.crop_size, self.tokens_per_side)
            )
            for p in found
        ]
        return expand_within_budget(encoded, expansions, max_length).ids

    def __call__(
        self,
        text: TextInput,
        images: ImagesInput = None,
        max_length: int | None = None,
        padding_side: str = "right",
        videos: VideosInput = None,
    ) -> dict[str, torch.Tensor]:
        texts, per_row, _ = prepare_media(
            text, images, videos, backbone="phi3_v", video_input=False, video_as_images=self.video_as_images
        )
        max_length = self.max_length if max_length is None else max_length

        pixel_rows: list[list[torch.Tensor]] = []
        size_rows: list[list[tuple[int, int]]] = []
        for imgs in per_row:
            processed = [
                image_crops(im, self.num_crops, self.crop_size, self.image_mean, self.image_std)
                for im in imgs
            ]
            pixel_rows.append([p for p, _ in processed])
            size_rows.append([s for _, s in processed])

        text_only = [i for i, imgs in enumerate(per_row) if not imgs]
        rows: list[list[int]] = [[] for _ in texts]
        if text_only:
            enc = self.tokenizer(
                [texts[i] for i in text_only],
                add_special_tokens=True,
                truncation=max_length is not None,
                max_length=max_length,
            )["input_ids"]
            for i, ids in zip(text_only, enc):
                rows[i] = list(ids)
        for i, imgs in enumerate(per_row):
            if imgs:
                rows[i] = self._image_row_ids(texts[i], size_rows[i], max_length)

        batch = self._pad(rows, padding_side)
        max_images = max(len(imgs) for imgs in per_row)
        if max_images:
            s = self.crop_size
            pixels = torch.zeros(len(texts), max_images, self.num_crops + 1, 3, s, s)
            sizes = torch.zeros(len(texts), max_images, 2, dtype=torch.long)
            for b, (px, sz) in enumerate(zip(pixel_rows, size_rows)):
                for m, (p, hw) in enumerate(zip(px, sz)):
                    pixels[b, m, : p.shape[0]] = p  # zero crops pad to num_crops + 1
                    sizes[b, m] = torch.tensor(hw)
            batch["pixel_values"] = pixels
            batch["image_sizes"] = sizes
        return batch

    def _pad(self, rows: list[list[int]], padding_side: str) -> dict[str, torch.Tensor]:
        ids, mask = pad_rows(rows, int(self.tokenizer.pad_token_id), padding_side)
        return {"input_ids": ids, "attention_mask": mask}

    # ------------------------------------------------------------------------------------------- files
    def save_pretrained(self, path: str | Path) -> None:
        """Write tokenizer files and an official-style preprocessor_config.json."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(path))
        (path / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(self), indent=2) + "\n")


def preprocessor_config(processor: Phi3VProcessor) -> dict[str, Any]:
    """The preprocessor_config.json fields the official files carry (without the remote-code auto_map);
    a crop geometry other than 336 px / patch 14 is recorded too, so a folder without config.json
    (a LoRA adapter) still knows it."""
    data: dict[str, Any] = {
        "image_processor_type": "Phi3VImageProcessor",
        "processor_class": "Phi3VProcessor",
        "num_crops": processor.num_crops,
        "num_img_tokens": processor.tokens_per_side**2,
        "image_mean": list(processor.image_mean),
        "image_std": list(processor.image_std),
    }
    if (processor.crop_size, processor.patch_size) != (336, 14):
        data.update(crop_size=processor.crop_size, patch_size=processor.patch_size)
    return data
