"""The media of a processor call, per row: images and videos, checked against the prompt's placeholders.

Every processor takes `images=` (per text a list of PIL images) and `videos=` (per text a list of
videos, each a list of PIL frames). `prepare_media` puts both in per-row lists and checks each row's
`<|image_k|>` and `<|video_k|>` placeholders against them before any pixel work. A backbone without a
video input refuses videos with an error naming it, unless the model setting `video_as_images` asks
for a video's frames as images (the placeholder then stands for that many images, in order); a
backbone with a video input may take that setting too.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from ..config import ConfigError
from .base import ImagesInput, TextInput, normalize_batch
from .placeholders import check_placeholders, frames_as_images

Video = Sequence[Image.Image]
VideosInput = Sequence[Video] | Sequence[Sequence[Video] | None] | None


def normalize_videos(text: TextInput, videos: VideosInput, rows: int) -> list[list[list[Image.Image]]]:
    """Per row, its videos (each a list of frames): `videos` is one list of videos for a single text,
    else one entry (a list of videos, or None) per text."""
    if videos is None:
        return [[] for _ in range(rows)]
    if isinstance(text, str):
        return [[list(v) for v in videos]]  # type: ignore[union-attr]
    if len(videos) != rows:
        raise ValueError(f"got {rows} texts but {len(videos)} video entries")
    return [[list(v) for v in row] if row is not None else [] for row in videos]  # type: ignore[union-attr]


def prepare_media(
    text: TextInput,
    images: ImagesInput,
    videos: VideosInput,
    *,
    backbone: str,
    video_input: bool,
    video_as_images: bool = False,
) -> tuple[list[str], list[list[Image.Image]], list[list[list[Image.Image]]]]:
    """Texts, per-row images and per-row videos of a processor call, placeholders checked (ValueError
    naming the row). With `video_as_images` every video is rewritten into its frames as images (no
    videos left); a video for a backbone without `video_input` is otherwise a `ConfigError`."""
    texts, per_row = normalize_batch(text, images)
    per_video = normalize_videos(text, videos, len(texts))
    for r, (t, imgs, vids) in enumerate(zip(texts, per_row, per_video)):  # fail before any pixel work
        check_placeholders(t, len(imgs), row=r)
        check_placeholders(t, len(vids), row=r, kind="video")
    if not any(per_video):
        return texts, per_row, per_video
    if video_as_images:
        rows = [frames_as_images(t, imgs, vids) for t, imgs, vids in zip(texts, per_row, per_video)]
        return [t for t, _ in rows], [imgs for _, imgs in rows], [[] for _ in texts]
    if not video_input:
        row = next(r for r, vids in enumerate(per_video) if vids)
        raise ConfigError(
            f"row {row}: the {backbone} backbone has no video input; set model.video_as_images: true "
            "to give a video's frames as images",
            key="model.video_as_images",
        )
    return texts, per_row, per_video


__all__ = ["Video", "VideosInput", "normalize_videos", "prepare_media"]
