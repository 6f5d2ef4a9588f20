"""Readers of the LLaVA-Hound video training files of VLM2Vec-V2 (`ShareGPTVideo/train_video_and_instruction`).

Both files are JSONL rows `{"id", "video", "conversations": [{"from": "human", "value": ...},
{"from": "gpt", "value": ...}, ...]}`; only the first two turns are read. `video` names a folder of
pre-extracted frames under the frame root (`train_300k/<video>/`), sampled when a row is loaded, as
MMEB-V2 does (`mmeb_v2.frames`). The caption file is read in both directions, as the reference does:
`caption_retrieval` (video -> caption) and `video_retrieval` (caption -> video); the QA file as
video + question -> answer. A missing or empty frame folder is a bad row naming source, row and path
(an error, or a counted skip with `data.skip_bad_rows`); the reference drops such rows silently.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa

from ..config.training_sections import LLAVAHOUND_DIRECTIONS
from ..errors import DataError, DataNotFoundError
from . import v2_prompts as prompts
from .records import ColumnMap, PairSource

_COLUMNS = ColumnMap(qry_text="qry", pos_text="pos_text", qry_video="qry_video", pos_video="pos_video")


def read_conversations(path: str | os.PathLike, max_rows: int | None = None) -> list[tuple[str, str, str]]:
    """(video folder name, human turn with `<|video_1|>` for `<video>`, gpt turn) per line, first
    `max_rows` lines when capped; a malformed line is an error naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"LLaVA-Hound file not found: {path}")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if max_rows is not None and len(rows) >= max_rows:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                video, turns = row["video"], row["conversations"]
                human, gpt = turns[0]["value"], turns[1]["value"]
            except (json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
                raise DataError(
                    f"{path}: line {lineno}: needs 'video' and 'conversations' with a human and a gpt turn "
                    f"({type(exc).__name__}: {exc})"
                ) from None
            rows.append(
                (str(video), str(human).replace(prompts.LLAVAHOUND_VIDEO_MARK, prompts.VIDEO), str(gpt))
            )
    return rows


def _pair_source(
    name: str, columns: dict[str, list], frames_dir: str | os.PathLike, weight: float, origin: str
):
    table = pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()})
    # auto_placeholder: a human turn without `<video>` still gets its video (the reference would drop it)
    return PairSource(
        name, table, _COLUMNS, image_root=frames_dir, weight=weight, origin=origin, auto_placeholder=True
    )


def read_llavahound_caption(
    path: str | os.PathLike,
    frames_dir: str | os.PathLike,
    *,
    direction: str,
    name: str,
    weight: float = 1.0,
) -> PairSource:
    """The caption file as `caption_retrieval` (human turn + video -> caption) or `video_retrieval`
    (`Find a video that contains ...: {caption}` -> `Understand the content of the provided video: ` + video)."""
    if direction not in LLAVAHOUND_DIRECTIONS:
        raise ValueError(f"direction must be one of {LLAVAHOUND_DIRECTIONS}, got {direction!r}")
    rows = read_conversations(path)
    videos = [v for v, _, _ in rows]
    nothing = [None] * len(rows)
    if direction == "caption_retrieval":
        columns = {"qry": [h for _, h, _ in rows], "qry_video": videos, "pos_text": [c for _, _, c in rows]}
        columns["pos_video"] = nothing
    else:
        columns = {
            "qry": [prompts.VIDEO_RETRIEVAL_QUERY.format(caption=c) for _, _, c in rows],
            "qry_video": nothing,
            "pos_text": [prompts.VIDEO_RETRIEVAL_TARGET] * len(rows),
            "pos_video": videos,
        }
    return _pair_source(name, columns, frames_dir, weight, str(path))


def read_llavahound_qa(
    path: str | os.PathLike,
    frames_dir: str | os.PathLike,
    *,
    name: str = "video_qa_240k",
    weight: float = 1.0,
    max_rows: int | None = None,
) -> PairSource:
    """The QA file: `Answer a question based on the content of a video. ` + human turn + video -> answer."""
    rows = read_conversations(path, max_rows)
    columns = {
        "qry": [prompts.VIDEO_QA_PREFIX + h for _, h, _ in rows],
        "qry_video": [v for v, _, _ in rows],
        "pos_text": [a for _, _, a in rows],
        "pos_video": [None] * len(rows),
    }
    return _pair_source(name, columns, frames_dir, weight, str(path))
