"""A small synthetic MMEB-V2 slice in the release's published layouts, so the real V2 readers run.

`write_synthetic_v2(root)` writes 11 video and 4 visual-document tasks (a partial slice, on purpose):
annotation clones under `video-tasks/<repo name>` and `visdoc-tasks/<repo name>` as hub parquet files
(`data/<split>-*.parquet`, `<config>/<split>-*.parquet`, BEIR `queries`/`corpus`/`qrels`), frame
folders of numbered JPGs under `video-tasks/frames/<archive>/...`, moment-retrieval clip folders
(`query`, `positive*`, negatives) and MomentSeeker's `video_frames/` clips, page PNGs in the reference
layout for one document set, in the Qwen3-port layout (`visdoc-tasks/images/`) for another, and none
for two sets whose pages are written from the corpus `image` column. Both frame-folder layout variants
occur (MSR-VTT and EgoSchema use the Qwen3-port one). Colours vary with the item, nothing is random.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

FRAMES = "video-tasks/frames"
PAGE_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
#: tasks the slice holds
VIDEO_TASKS = (
    "K700",
    "SmthSmthV2",
    "MVBench",
    "Video-MME",
    "NExTQA",
    "EgoSchema",
    "ActivityNetQA",
    "DiDeMo",
    "MSR-VTT",
    "QVHighlight",
    "MomentSeeker",
)
VISDOC_TASKS = ("ViDoRe_arxivqa", "VisRAG_ChartQA", "ViDoSeek-page", "ViDoSeek-doc")


def _colour(i: int) -> tuple[int, int, int]:
    return ((40 * i) % 256, (90 + 70 * i) % 256, (200 - 30 * i) % 256)


def write_parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema | None = None) -> Path:
    """One hub-style parquet file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def write_frames(folder: Path, count: int, seed: int = 0, pattern: str = "frame_{:04d}.jpg") -> Path:
    """`count` small frames named by `pattern` (1-based)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, count + 1):
        Image.new("RGB", (32, 24), _colour(seed + i)).save(folder / pattern.format(i))
    return folder


def page_png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 56), _colour(seed)).save(buf, format="PNG")
    return buf.getvalue()


def _split(root: Path, clone: str, config: str | None, split: str, rows: list[dict]) -> None:
    write_parquet(root / clone / (config or "data") / f"{split}-00000-of-00001.parquet", rows)


def _classification(root: Path) -> None:
    labels = ["abseiling", "waiting_in_line", "juggling_balls"]
    rows = [{"video_id": f"k700_{i}", "pos_text": labels[i % 3]} for i in range(4)]
    _split(root, "video-tasks/Kinetics-700", None, "test", rows)
    for i, r in enumerate(rows):
        write_frames(root / FRAMES / "video_cls/K700" / r["video_id"], (64, 8, 5, 12)[i], seed=i)
    options = ["Moving something up", "Pushing something left", "Tearing something"]
    rows = [{"video_id": str(100 + i), "pos_text": options[i], "neg_text": options} for i in range(3)]
    _split(root, "video-tasks/SmthSmthV2", None, "test", rows)
    for r in rows:
        write_frames(root / FRAMES / "video_cls/SSv2" / r["video_id"], 16, seed=int(r["video_id"]))


def _qa(root: Path) -> None:
    qa = FRAMES + "/video_qa"
    rows = [
        {"question": "What fruit is shown?", "videoID": "vm_1", "options": ["A. Apples.", "B. Pears.", "C. Figs."],
         "answer": "B", "question_id": "1-1", "domain": "x", "sub_category": "y"},
    ]  # fmt: skip
    _split(root, "video-tasks/Video-MME", None, "test", rows)
    write_frames(root / qa / "Video-MME/vm_1", 64, pattern="{:04d}.jpeg")
    rows = [{"video": "nx_1", "question": "why wave", "answer": 2, "qid": 1, "type": "CW",
             **{f"a{j}": f"reason {j}" for j in range(5)}}]  # fmt: skip
    _split(root, "video-tasks/NExTQA", "MC", "test", rows)
    write_frames(root / qa / "NExTQA/nx_1", 10, pattern="{:04d}.jpeg")
    rows = [{"video_idx": "eg_1", "question": "What did c do?", "answer": "0", "question_idx": "q1",
             "option": ["A. c cooked.", "B. c read.", "C. c ran."]}]  # fmt: skip
    _split(root, "video-tasks/EgoSchema", "Subset", "test", rows)
    write_frames(root / qa / "egoschema/eg_1", 8, pattern="{:04d}.jpeg")
    rows = [{"video_name": "an_1", "question": "is it raining", "answer": "no", "question_id": "a1"}]
    _split(root, "video-tasks/ActivityNetQA", None, "test", rows)
    write_frames(root / qa / "ActivityNetQA/v_an_1", 3, pattern="{:04d}.jpeg")
    for subset, video in (("action_sequence", "clip_1.mp4"), ("fine_grained_action", "clip_2.webm")):
        rows = [
            {"question": f"{subset}?", "video": video, "candidates": ["left", "right"], "answer": "right"}
        ]
        _split(root, "video-tasks/MVBench", subset, "train", rows)
        write_frames(root / qa / "MVBench" / subset / video, 9, pattern="{:04d}.jpeg")


def _retrieval(root: Path) -> None:
    rows = [
        {"video_id": f"video{i}", "video": f"video{i}.mp4", "caption": f"a clip number {i}"} for i in range(3)
    ]
    _split(root, "video-tasks/MSR-VTT", "test_1k", "test", rows)
    for i, r in enumerate(rows):
        write_frames(
            root / FRAMES / "video_ret/data/ziyan/video_retrieval/MSR-VTT/frames" / r["video_id"], 8, i
        )
    rows = [{"video": f"dd/{n}.mp4", "caption": f"scene {n}"} for n in ("1234@56", "999@1")]
    _split(root, "video-tasks/DiDeMo", None, "test", rows)
    for i, n in enumerate(("1234@56", "999@1")):
        write_frames(root / FRAMES / "video_ret/DiDeMo" / n, 20, seed=i)


def _moments(root: Path) -> None:
    mret = root / FRAMES / "video_mret"
    rows = [
        {"query": "a dog runs", "video_path": "qv/vid_a.mp4"},
        {"query": "a cat", "video_path": "qv/vid_b.mp4"},
    ]
    _split(root, "video-tasks/QVHighlight", None, "test", rows)
    for v in ("vid_a", "vid_b"):
        write_frames(mret / "QVHighlight" / v / "query", 64)
        for j, clip in enumerate(("positive_0", "negative_1", "negative_2")):
            write_frames(mret / "QVHighlight" / v / clip, 8, seed=j)
    clip = {"output_path": ""}
    rows = [
        {"query": "open the door", "input_frames": "",
         "positive_frames": [{**clip, "output_path": "ms/c1.mp4"}, {**clip, "output_path": "ms/c2.mp4"}],
         "negative_frames": [{**clip, "output_path": "ms/c3.mp4"}]},
        {"query": "same person", "input_frames": "ms/q1.jpg",
         "positive_frames": [{**clip, "output_path": "ms/c3.mp4"}], "negative_frames": []},
        {"query": "then what", "input_frames": "ms/q2.mp4",
         "positive_frames": [{**clip, "output_path": "ms/c4.mp4"}],
         "negative_frames": [{**clip, "output_path": "ms/c1.mp4"}]},
    ]  # fmt: skip
    _split(root, "video-tasks/MomentSeeker", None, "test", rows)
    for i, name in enumerate(("ms_c1", "ms_c2", "ms_c3", "ms_c4", "ms_q2")):
        write_frames(mret / "MomentSeeker/video_frames" / name, 8 if i else 6, seed=i)
    (mret / "MomentSeeker/query_ms").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), "red").save(mret / "MomentSeeker/query_ms/q1.jpg")


def write_beir(clone: Path, split: str, queries: list, corpus: list, qrels: list[tuple]) -> None:
    """A BEIR clone: `queries`, `corpus` (with an `image` feature struct) and `qrels` configs."""
    write_parquet(clone / "queries" / f"{split}-00000-of-00001.parquet",
                  [{"query-id": q, "query": f"question {q}"} for q in queries])  # fmt: skip
    schema = pa.schema([("corpus-id", pa.array(corpus).type), ("image", PAGE_IMAGE)])
    rows = [{"corpus-id": c, "image": {"bytes": page_png(i), "path": None}} for i, c in enumerate(corpus)]
    write_parquet(clone / "corpus" / f"{split}-00000-of-00001.parquet", rows, schema)
    write_parquet(clone / "qrels" / f"{split}-00000-of-00001.parquet",
                  [{"query-id": q, "corpus-id": c, "score": s} for q, c, s in qrels])  # fmt: skip


def _visdoc(root: Path) -> None:
    vd = root / "visdoc-tasks"
    corpus = list(range(10, 16))
    write_beir(
        vd / "arxivqa_test_subsampled_beir", "test", [1, 2], corpus, [(1, 11, 1), (2, 14, 1), (2, 15, 0)]
    )
    for i, c in enumerate(corpus):
        (vd / "ViDoRe_arxivqa").mkdir(parents=True, exist_ok=True)
        (vd / "ViDoRe_arxivqa" / f"{c}.png").write_bytes(page_png(i))
    files = ["chart_a.png", "chart_b.png", "chart_c.png"]
    write_beir(vd / "VisRAG-Ret-Test-ChartQA", "train", ["q1", "q2"], files,
               [("q1", "chart_b.png", 1), ("q2", "chart_c.png", 1)])  # fmt: skip
    pages = list(range(1020, 1030))
    write_beir(vd / "ViDoSeek-page-fixed", "test", [7, 8], pages, [(7, 1021, 1), (8, 1025, 1), (8, 1026, 1)])
    (vd / "images/ViDoSeek-page").mkdir(parents=True, exist_ok=True)
    for i, c in enumerate(pages):
        (vd / "images/ViDoSeek-page" / f"{c}.png").write_bytes(page_png(i))
    graded = [(7, p, 3 if p == 1021 else 2) for p in range(1020, 1025)] + [(8, 1025, 2), (8, 1026, 3)]
    write_beir(vd / "ViDoSeek", "test", [7, 8], pages, graded)


def write_synthetic_v2(root: str | Path) -> Path:
    """Write the synthetic V2 slice under `root` (see the module docstring); returns `root`."""
    root = Path(root)
    for part in (_classification, _qa, _retrieval, _moments, _visdoc):
        part(root)
    return root
