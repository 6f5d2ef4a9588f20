"""The backbone kit: MMEB media placeholders expanded into a backbone's tokens, and features put back.

Every backbone turns a prompt with `<|image_k|>` placeholders into token ids the same way: the text
between placeholders is tokenised (each backbone its own way), each placeholder becomes that media
item's run of tokens (`Expansion`: which ids, how many, and their modality types), and a text-token
budget (`max_length`) cuts text only, never a media item's tokens. In the model, the vision features
are then written at those token positions (`scatter_features`). A placeholder kind is a name in
`PLACEHOLDER_KINDS`: images (`<|image_k|>`) and videos (`<|video_k|>`, a list of frames), each
numbered from 1 on its own; a backbone without video input may take a video's frames as images
(`frames_as_images`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

#: The placeholder MMEB stores in its instructions: `<|image_1|>`, `<|image_2|>`, ...
MMEB_IMAGE_PLACEHOLDER = re.compile(r"<\|image_(\d+)\|>")
#: The placeholder of a video (a list of frames) in MMEB-V2 style: `<|video_1|>`, `<|video_2|>`, ...
MMEB_VIDEO_PLACEHOLDER = re.compile(r"<\|video_(\d+)\|>")
#: the kinds of media placeholder MMEB prompts carry, as named in `<|{kind}_{k}|>`
PLACEHOLDER_KINDS: tuple[str, ...] = ("image", "video")
#: any placeholder of a known kind: group 1 is the kind, group 2 the number k (from 1)
PLACEHOLDER = re.compile(rf"<\|({'|'.join(PLACEHOLDER_KINDS)})_(\d+)\|>")
#: modality type of a token (`mm_token_type_ids`, transformers' Qwen-VL convention): text, image, video
TEXT_TYPE, IMAGE_TYPE, VIDEO_TYPE = 0, 1, 2
_PATTERNS = {"image": MMEB_IMAGE_PLACEHOLDER, "video": MMEB_VIDEO_PLACEHOLDER}


@dataclass(frozen=True)
class Placeholder:
    """One `<|{kind}_{number}|>` in a prompt."""

    kind: str
    number: int


@dataclass(frozen=True)
class Expansion:
    """The tokens one placeholder becomes, with the modality type of each (`TEXT_TYPE` for markers
    such as `<|vision_start|>`)."""

    ids: list[int]
    types: list[int]


def split_at_placeholders(text: str) -> tuple[list[str], list[Placeholder]]:
    """The text pieces around the placeholders (one more than placeholders, possibly empty) and the
    placeholders in order of appearance."""
    parts = PLACEHOLDER.split(text)  # text, kind, k, text, kind, k, ..., text
    pieces = parts[0::3]
    found = [Placeholder(kind, int(k)) for kind, k in zip(parts[1::3], parts[2::3])]
    return pieces, found


def check_placeholders(text: str, num_images: int, row: int | None = None, kind: str = "image") -> list[int]:
    """Validate MMEB placeholders of `kind`: numbered 1..n, contiguous, n == number of media items of
    that kind (`num_images`). Returns the numbers."""
    nums = [int(m) for m in _PATTERNS[kind].findall(text)]
    where = f"row {row}: " if row is not None else ""
    if nums != list(range(1, len(nums) + 1)):  # in order: features are placed in order of appearance
        raise ValueError(
            f"{where}{kind} placeholders must be <|{kind}_1|>..<|{kind}_n|> in order, got {nums} in {text[:80]!r}"
        )
    if len(nums) != num_images:
        raise ValueError(
            f"{where}prompt has {len(nums)} {kind} placeholder(s) but {num_images} {kind}(s) were given: "
            f"{text[:80]!r}"
        )
    return nums


def frames_as_images(text: str, images: Sequence, videos: Sequence[Sequence]) -> tuple[str, list]:
    """The prompt and images of a row whose videos are given as their frames: each `<|video_k|>`
    becomes one `<|image_j|>` per frame of video k, and every placeholder is renumbered in order of
    appearance, the images following in that order. The placeholders must be valid already."""
    pieces, found = split_at_placeholders(text)
    out, merged = [pieces[0]], []
    for p, piece in zip(found, pieces[1:]):
        media = [images[p.number - 1]] if p.kind == "image" else list(videos[p.number - 1])
        for item in media:
            merged.append(item)
            out.append(f"<|image_{len(merged)}|>")
        out.append(piece)
    return "".join(out), merged


def media_expansion(
    token_id: int, count: int, start: int | None = None, end: int | None = None, media_type: int = IMAGE_TYPE
) -> Expansion:
    """`count` copies of `token_id` (typed `media_type`), between optional `start` / `end` markers."""
    ids = [token_id] * count
    types = [media_type] * count
    if start is not None:
        ids, types = [start, *ids], [TEXT_TYPE, *types]
    if end is not None:
        ids, types = [*ids, end], [*types, TEXT_TYPE]
    return Expansion(ids, types)


def split_at_token(ids: Sequence[int], token_id: int) -> list[list[int]]:
    """Token ids cut at every `token_id` (dropped): the text pieces around single media tokens, for a
    backbone that tokenises the whole prompt with one token standing for each placeholder."""
    pieces: list[list[int]] = [[]]
    for tok in ids:
        if tok == token_id:
            pieces.append([])
        else:
            pieces[-1].append(tok)
    return pieces


def expand_within_budget(
    pieces: Sequence[Sequence[int]], expansions: Sequence[Expansion], max_text: int | None
) -> Expansion:
    """One row: text pieces and placeholder expansions interleaved in prompt order (piece, expansion,
    piece, ..., piece), keeping the first `max_text` text tokens (None: all) and every expansion whole.

    Returns the row's ids and types as one `Expansion`."""
    if len(pieces) != len(expansions) + 1:
        raise ValueError(
            f"{len(expansions)} placeholder expansion(s) need {len(expansions) + 1} text pieces, got {len(pieces)}"
        )
    budget = math.inf if max_text is None else max(max_text, 0)
    ids: list[int] = []
    types: list[int] = []
    for i, piece in enumerate(pieces):
        keep = list(piece[: int(min(len(piece), budget))])
        budget -= len(keep)
        ids += keep
        types += [TEXT_TYPE] * len(keep)
        if i < len(expansions):
            ids += expansions[i].ids
            types += expansions[i].types
    return Expansion(ids, types)


def scatter_features(embeds: torch.Tensor, where: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Write the media features [N, H], in order, at the N positions `where` [B, T] of `embeds` [B, T, H]
    (row after row, left to right: the order of the placeholders)."""
    if int(where.sum()) != features.shape[0]:
        raise ValueError(
            f"{int(where.sum())} media token positions in input_ids but {features.shape[0]} features"
        )
    return embeds.masked_scatter(where.unsqueeze(-1).expand_as(embeds), features)


__all__ = [
    "IMAGE_TYPE",
    "MMEB_VIDEO_PLACEHOLDER",
    "VIDEO_TYPE",
    "PLACEHOLDER",
    "PLACEHOLDER_KINDS",
    "TEXT_TYPE",
    "Expansion",
    "Placeholder",
    "expand_within_budget",
    "frames_as_images",
    "media_expansion",
    "scatter_features",
    "split_at_placeholders",
    "split_at_token",
]
