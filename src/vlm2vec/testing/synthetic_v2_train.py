"""Synthetic VLM2Vec-V2 training sources in their published layouts, so the real readers run on them.

Layout writers take explicit rows (tests use them to plant bad rows); `write_synthetic_v2_train`
fills them with learnable content built from the synthetic scenes (coloured shapes): ColPali pages
with a question about the page and its answer, VisRAG pages with their caption as the query, and
LLaVA-Hound videos (frames of a scene drifting sideways) with their caption and questions. Layouts:
`colpali_train_set/data/train-00000-of-00001.parquet` and `VisRAG-Ret-Train-In-domain-data/data/...`
with the page inside the parquet (`image`: the hub Image struct), `train_video_and_instruction/
video_instruction/train/sft/{video_caption_300k.jsonl, video_240k_caption_15k.jsonl}` and the frames
under `train_video_and_instruction/train_300k/<video>/c01_0001.jpeg ...` (LLaVA-Hound's naming).
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from PIL import Image

from .synthetic.images import Scene, render_scene, sample_scene
from .synthetic_v2 import PAGE_IMAGE, drifting_frames, write_parquet

COLPALI_CLONE = "colpali_train_set"
VISRAG_CLONE = "VisRAG-Ret-Train-In-domain-data"
HOUND = "train_video_and_instruction"
CAPTION_FILE = f"{HOUND}/video_instruction/train/sft/video_caption_300k.jsonl"
QA_FILE = f"{HOUND}/video_instruction/train/sft/video_240k_caption_15k.jsonl"
FRAMES = f"{HOUND}/train_300k"
#: the six VisRAG in-domain document sources, in the loader's order
VISRAG_SOURCES = ("ArxivQA", "ChartQA", "MP-DocVQA", "InfoVQA", "PlotQA", "SlideVQA")
_SHARD = "data/train-00000-of-00001.parquet"


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_colpali_train_set(clone: str | Path, rows: Sequence[dict]) -> Path:
    """`data/train-*.parquet` with the published columns; each row: `query`, `answer`, `image` (bytes
    or None for a row without a page)."""
    clone = Path(clone)
    table = [
        {"query": r["query"], "image": {"bytes": r["image"], "path": None} if r["image"] else None,
         "image_filename": f"images/doc_{i}.png", "answer": r["answer"], "source": "synthetic",
         "prompt": "a long prompt the reference ignores", "answer_type": "short", "options": None,
         "page": str(i), "model": "synthetic"}
        for i, r in enumerate(rows)
    ]  # fmt: skip
    schema = pa.schema(
        [("query", pa.string()), ("image", PAGE_IMAGE), ("image_filename", pa.string()), ("answer", pa.string()),
         ("source", pa.string()), ("prompt", pa.string()), ("answer_type", pa.string()),
         ("options", pa.string()), ("page", pa.string()), ("model", pa.string())]
    )  # fmt: skip
    write_parquet(clone / _SHARD, table, schema)
    return clone


def write_visrag_indomain(clone: str | Path, rows: Sequence[dict]) -> Path:
    """`data/train-*.parquet` with `query`, `image` (the Image struct) and `source` per row."""
    clone = Path(clone)
    table = [
        {"query": r["query"], "image": {"bytes": r["image"], "path": None}, "source": r["source"]}
        for r in rows
    ]
    schema = pa.schema([("query", pa.string()), ("image", PAGE_IMAGE), ("source", pa.string())])
    write_parquet(clone / _SHARD, table, schema)
    return clone


def conversation(video: str, human: str, gpt: str, row_id: str) -> dict:
    return {"id": row_id, "video": video, "conversations": [{"from": "human", "value": human},
                                                           {"from": "gpt", "value": gpt}]}  # fmt: skip


def write_jsonl(path: Path, rows: Sequence[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_video_frames(folder: Path, frames: Sequence[Image.Image]) -> Path:
    """LLaVA-Hound's frame naming: `c01_0001.jpeg`, `c01_0002.jpeg`, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames, 1):
        frame.save(folder / f"c01_{i:04d}.jpeg", quality=95)
    return folder


@dataclass(frozen=True)
class V2TrainData:
    """Where `write_synthetic_v2_train` put each source (what the `data.*` keys point at)."""

    colpali_train_dir: Path
    visrag_indomain_dir: Path
    llavahound_caption_file: Path
    llavahound_qa_file: Path
    llavahound_frames_dir: Path


def _question(rng: random.Random, scene: Scene) -> tuple[str, str]:
    obj = rng.choice(scene.objects)
    if rng.random() < 0.5:
        return f"What color is the {obj.shape}?", obj.color
    return f"What shape is the {obj.color} object?", obj.shape


def write_synthetic_v2_train(
    root: str | Path, *, rows: int = 8, videos: int = 4, frames: int = 10, seed: int = 0
) -> V2TrainData:
    """All four sources under `root`: `rows` ColPali and VisRAG rows, `videos` videos of `frames`
    frames each with one caption and one question per video."""
    root = Path(root)
    rng = random.Random(seed)
    colpali = []
    for _ in range(rows):
        scene = sample_scene(rng, text_prob=0.0)
        question, answer = _question(rng, scene)
        colpali.append({"query": question, "answer": answer, "image": png_bytes(render_scene(scene))})
    visrag = []
    for i in range(rows):
        scene = sample_scene(rng, text_prob=0.0)
        source = VISRAG_SOURCES[i % len(VISRAG_SOURCES)]
        visrag.append({"query": scene.caption(), "source": source, "image": png_bytes(render_scene(scene))})
    captions, questions = [], []
    for i in range(videos):
        scene = sample_scene(rng, text_prob=0.0)
        name = f"v_{seed}_{i:05d}"
        write_video_frames(root / FRAMES / name, drifting_frames(scene, frames))
        captions.append(conversation(name, "<video>\nDescribe the video.", scene.caption(), f"cap_{i}"))
        question, answer = _question(rng, scene)
        questions.append(conversation(name, "<video>\n" + question, answer, f"qa_{i}"))
    return V2TrainData(
        write_colpali_train_set(root / COLPALI_CLONE, colpali),
        write_visrag_indomain(root / VISRAG_CLONE, visrag),
        write_jsonl(root / CAPTION_FILE, captions),
        write_jsonl(root / QA_FILE, questions),
        root / FRAMES,
    )
