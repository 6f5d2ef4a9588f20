"""A Qwen-VL video from its frames, with the image processor alone (the video processor needs torchvision).

Qwen2-VL's vision tower reads a video as temporal patches: each patch vector holds `temporal_patch_size`
(2) consecutive frames of one `patch_size` square, channel-major (C, t, p, p), and the patches run over
(temporal group, merged row, merged column, row in merge, column in merge). An image is the same with
its one frame repeated to fill the temporal patch. So each frame goes through the image processor
(resize within the image pixel limits, rescale, normalise, patchify with the frame repeated), the
repeat is dropped, and consecutive frames are grouped in twos: an odd frame count is completed by
repeating the last frame. Every frame is first brought to the first frame's size, so a video has one
grid `(t, h, w)` and takes `t * h * w / merge**2` tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from .base import to_rgb


def padded_frames(frames: Sequence[Image.Image], temporal_patch_size: int) -> list[Image.Image]:
    """RGB frames at the first frame's size, the last repeated up to a multiple of the temporal patch."""
    if not frames:
        raise ValueError("a video needs at least one frame")
    size = frames[0].size
    out = [to_rgb(f if f.size == size else f.resize(size, Image.Resampling.BICUBIC)) for f in frames]
    out += [out[-1]] * (-len(out) % temporal_patch_size)
    return out


def video_patches(image_processor: Any, frames: Sequence[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
    """`pixel_values_videos` rows [t*h*w, C*tp*p*p] and the `video_grid_thw` row [t, h, w] of one video."""
    tp, p = int(image_processor.temporal_patch_size), int(image_processor.patch_size)
    frames = padded_frames(frames, tp)
    out = image_processor(images=frames, return_tensors="pt")
    pixels, grids = out["pixel_values"], out["image_grid_thw"]
    _, gh, gw = (int(x) for x in grids[0])
    channels = pixels.shape[-1] // (tp * p * p)
    # per frame [patches, C, tp, p*p] with the frame repeated over tp: keep one copy
    per_frame = pixels.view(len(frames), gh * gw, channels, tp, p * p)[:, :, :, 0]
    t = len(frames) // tp
    grouped = per_frame.view(t, tp, gh * gw, channels, p * p).permute(0, 2, 3, 1, 4)
    return grouped.reshape(t * gh * gw, channels * tp * p * p), torch.tensor([t, gh, gw])


def temporal_groups(image_processor: Any, num_frames: int) -> int:
    """Temporal patches (grid t) of a video of `num_frames` frames: the frames in groups of the temporal
    patch size, the last group completed."""
    return -(-num_frames // int(image_processor.temporal_patch_size))


__all__ = ["padded_frames", "temporal_groups", "video_patches"]
