"""The Qwen-VL vision path of a forward: image and video patches through ONE call of the vision tower.

The lockstep rule (`base.embed_with_images`) asks for one vision call per forward whatever the mix
of rows, so a batch's image patches and video patches go in together (patches concatenated, grids
concatenated: images first, then videos) and the merged features come back in that order. They are
then written at the media pads in the order the pads appear (`in_position_order`), which is the
order transformers' Qwen-VL models use for their DeepStack features too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .base import embed_with_images
from .placeholders import scatter_features

#: (patches, grid) keys of each media kind, in the order their features come out of the tower
MEDIA_KEYS: tuple[tuple[str, str], ...] = (
    ("pixel_values", "image_grid_thw"),
    ("pixel_values_videos", "video_grid_thw"),
)


def has_media(inputs: Mapping[str, Any]) -> bool:
    """Whether a batch holds any image or video patches."""
    return any(inputs.get(pixels) is not None for pixels, _ in MEDIA_KEYS)


def vision_args(inner: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> tuple[tuple | None, Any]:
    """The vision tower's arguments for a batch (None when it has no images or videos: patches and
    grids of images, then videos) and for the dummy image: the smallest image the tower accepts,
    one merged token of zero pixels."""
    visual = inner.visual
    parts = [(inputs[pixels], inputs[grid]) for pixels, grid in MEDIA_KEYS if inputs.get(pixels) is not None]
    image_args = None
    if len(parts) == 1:
        image_args = (parts[0][0].type(visual.dtype), parts[0][1])
    elif parts:
        pixels = torch.cat([p.type(visual.dtype) for p, _ in parts])
        image_args = (pixels, torch.cat([g for _, g in parts]))
    device = inputs["input_ids"].device

    def dummy(embeds: torch.Tensor) -> tuple:
        vcfg = inner.config.vision_config
        merge = vcfg.spatial_merge_size
        patch_dim = vcfg.in_channels * vcfg.temporal_patch_size * vcfg.patch_size**2
        grid = torch.tensor([[1, merge, merge]], device=device)
        return (torch.zeros(merge * merge, patch_dim, device=device, dtype=visual.dtype), grid)

    return image_args, dummy


def in_position_order(
    config: Any, input_ids: torch.Tensor, features: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The media pad positions [B, T] of a batch and its features (images' first, then videos') in
    the order of those positions. A batch without videos keeps its features as they are."""
    image_mask = input_ids == config.image_token_id
    video_mask = input_ids == config.video_token_id
    if not bool(video_mask.any()):
        return image_mask, features
    where = image_mask | video_mask
    is_image = image_mask[where]
    ordered = torch.empty_like(features)
    ordered[is_image] = features[: int(image_mask.sum())]
    ordered[~is_image] = features[int(image_mask.sum()) :]
    return where, ordered


def input_embeddings(inner: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Token embeddings with the vision tower's features written at the image and video pads (or, for
    a text-only training batch, plus the exact zero of a dummy image), through `embed_with_images`:
    token embeddings first, then one call of the vision tower, on every batch. `Qwen2VLModel` itself
    then only runs the language model (it is given `inputs_embeds`, no pixels)."""
    input_ids = inputs["input_ids"]
    image_args, dummy = vision_args(inner, inputs)
    return embed_with_images(
        lambda: inner.get_input_embeddings()(input_ids),
        inner,
        inner.visual,
        image_args,
        dummy,
        lambda embeds, features: scatter_features(
            embeds, *in_position_order(inner.config, input_ids, features)
        ),
        select=lambda out: out.pooler_output,  # merged tokens of all images, then all videos, in order
    )


__all__ = ["MEDIA_KEYS", "has_media", "in_position_order", "input_embeddings", "vision_args"]
