"""A small synthetic MMEB-V2 slice in the release's published layouts, so the real V2 readers run.

`write_synthetic_v2(root)` writes 11 video and 4 visual-document tasks (a partial slice, on purpose):
annotation clones under `video-tasks/<repo name>` and `visdoc-tasks/<repo name>` as hub parquet files
(`data/<split>-*.parquet`, `<config>/<split>-*.parquet`, BEIR `queries`/`corpus`/`qrels`), frame
folders of numbered JPGs under `video-tasks/frames/<archive>/...`, moment-retrieval clip folders
(`query`, `positive*`, negatives) and MomentSeeker's `video_frames/` clips, page PNGs in the reference
layout for one document set, in the Qwen3-port layout (`visdoc-tasks/images/`) for another, and none
for two sets whose pages are written from the corpus `image` column. Both frame-folder layout variants
occur (MSR-VTT and EgoSchema use the Qwen3-port one). Colours vary with the item, nothing is random.
With `scenes=True` (the CPU demo's held-out slice) the classification, retrieval and document tasks
show synthetic scenes instead of flat colours, and their labels, captions and queries describe them,
so a model trained on the synthetic V2 training mix (`synthetic_v2_train`) can learn them.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from .synthetic.images import COLORS, SHAPES, Scene, render_scene, sample_scene

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
#: rows of the learnable tasks with `scenes=True` (video classification and retrieval; document
#: tasks: that many queries)
SCENE_ROWS = 12
VISDOC_TASKS = ("ViDoRe_arxivqa", "VisRAG_ChartQA", "ViDoSeek-page", "ViDoSeek-doc")


def _colour(i: int) -> tuple[int, int, int]:
    return ((40 * i) % 256, (90 + 70 * i) % 256, (200 - 30 * i) % 256)


def write_parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema | None = None) -> Path:
    """One hub-style parquet file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def drifting_frames(scene: Scene, count: int) -> list[Image.Image]:
    """`count` frames of the scene shifted sideways by a few pixels each (a slow pan)."""
    pixels = np.asarray(render_scene(scene))
    return [Image.fromarray(np.roll(pixels, 2 * k, axis=1)) for k in range(count)]


def write_frames(
    folder: Path, count: int, seed: int = 0, pattern: str = "frame_{:04d}.jpg", scene: Scene | None = None
) -> Path:
    """`count` small frames named by `pattern` (1-based): flat colours, or a scene panning."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = (
        drifting_frames(scene, count)
        if scene
        else [Image.new("RGB", (32, 24), _colour(seed + i)) for i in range(1, count + 1)]
    )
    for i, frame in enumerate(frames, 1):
        frame.save(folder / pattern.format(i))
    return folder


def page_png(seed: int, scene: Scene | None = None) -> bytes:
    buf = io.BytesIO()
    (render_scene(scene) if scene else Image.new("RGB", (40, 56), _colour(seed))).save(buf, format="PNG")
    return buf.getvalue()


def _scenes(rng: random.Random | None, count: int) -> list[Scene | None]:
    """`count` scenes with distinct captions (None each without `rng`: flat colours)."""
    if rng is None:
        return [None] * count
    scenes: dict[str, Scene] = {}
    while len(scenes) < count:
        scene = sample_scene(rng, text_prob=0.0)
        scenes.setdefault(scene.caption(), scene)
    return list(scenes.values())


def _split(root: Path, clone: str, config: str | None, split: str, rows: list[dict]) -> None:
    write_parquet(root / clone / (config or "data") / f"{split}-00000-of-00001.parquet", rows)


def _classification(root: Path, rng: random.Random | None) -> None:
    labels = ["abseiling", "waiting_in_line", "juggling_balls"]
    classes = list(zip(COLORS, SHAPES))[:3]
    if rng is not None:
        labels = [f"{c} {s}" for c, s in classes]
    rows = [
        {"video_id": f"k700_{i}", "pos_text": labels[i % 3]} for i in range(4 if rng is None else SCENE_ROWS)
    ]
    _split(root, "video-tasks/Kinetics-700", None, "test", rows)
    for i, r in enumerate(rows):
        scene = (
            None
            if rng is None
            else sample_scene(
                rng, text_prob=0.0, main=classes[i % 3], main_scale=(0.5, 0.65), other_scale=(0.15, 0.24)
            )
        )
        write_frames(
            root / FRAMES / "video_cls/K700" / r["video_id"], (64, 8, 5, 12)[i % 4], seed=i, scene=scene
        )
    options = ["Moving something up", "Pushing something left", "Tearing something"]
    rows = [{"video_id": str(100 + i), "pos_text": options[i], "neg_text": options} for i in range(3)]
    _split(root, "video-tasks/SmthSmthV2", None, "test", rows)
    for r in rows:
        write_frames(root / FRAMES / "video_cls/SSv2" / r["video_id"], 16, seed=int(r["video_id"]))


def _scene_question(rng: random.Random | None, count: int = 3) -> tuple[Scene | None, str, list[str], int]:
    """A scene, a question about the colour of one of its shapes, `count` colour options and the
    index of the right one (None without `rng`)."""
    if rng is None:
        return None, "", [], 0
    scene = sample_scene(rng, text_prob=0.0)
    obj = rng.choice(scene.objects)
    options = [obj.color, *rng.sample([c for c in COLORS if c != obj.color], count - 1)]
    rng.shuffle(options)
    return scene, f"What color is the {obj.shape}?", options, options.index(obj.color)


def _qa(root: Path, rng: random.Random | None) -> None:
    qa = FRAMES + "/video_qa"
    letters = "ABCDE"
    scene, question, options, k = _scene_question(rng)
    rows = [
        {"question": "What fruit is shown?", "videoID": "vm_1", "options": ["A. Apples.", "B. Pears.", "C. Figs."],
         "answer": "B", "question_id": "1-1", "domain": "x", "sub_category": "y"},
    ]  # fmt: skip
    if scene:
        rows[0].update(
            question=question,
            options=[f"{letters[j]}. {o}." for j, o in enumerate(options)],
            answer=letters[k],
        )
    _split(root, "video-tasks/Video-MME", None, "test", rows)
    write_frames(root / qa / "Video-MME/vm_1", 64, pattern="{:04d}.jpeg", scene=scene)
    scene, question, options, k = _scene_question(rng, 5)
    rows = [{"video": "nx_1", "question": "why wave", "answer": 2, "qid": 1, "type": "CW",
             **{f"a{j}": f"reason {j}" for j in range(5)}}]  # fmt: skip
    if scene:
        rows[0].update(question=question, answer=k, **{f"a{j}": o for j, o in enumerate(options)})
    _split(root, "video-tasks/NExTQA", "MC", "test", rows)
    write_frames(root / qa / "NExTQA/nx_1", 10, pattern="{:04d}.jpeg", scene=scene)
    scene, question, options, k = _scene_question(rng)
    rows = [{"video_idx": "eg_1", "question": "What did c do?", "answer": "0", "question_idx": "q1",
             "option": ["A. c cooked.", "B. c read.", "C. c ran."]}]  # fmt: skip
    if scene:
        rows[0].update(
            question=question, answer=str(k), option=[f"{letters[j]}. {o}." for j, o in enumerate(options)]
        )
    _split(root, "video-tasks/EgoSchema", "Subset", "test", rows)
    write_frames(root / qa / "egoschema/eg_1", 8, pattern="{:04d}.jpeg", scene=scene)
    rows = [{"video_name": "an_1", "question": "is it raining", "answer": "no", "question_id": "a1"}]
    _split(root, "video-tasks/ActivityNetQA", None, "test", rows)
    write_frames(root / qa / "ActivityNetQA/v_an_1", 3, pattern="{:04d}.jpeg")
    for subset, video in (("action_sequence", "clip_1.mp4"), ("fine_grained_action", "clip_2.webm")):
        scene, question, options, k = _scene_question(rng, 2)
        rows = [
            {"question": f"{subset}?", "video": video, "candidates": ["left", "right"], "answer": "right"}
        ]
        if scene:
            rows[0].update(question=question, candidates=options, answer=options[k])
        _split(root, "video-tasks/MVBench", subset, "train", rows)
        write_frames(root / qa / "MVBench" / subset / video, 9, pattern="{:04d}.jpeg", scene=scene)


def _retrieval(root: Path, rng: random.Random | None) -> None:
    videos, names = (
        (3, ("1234@56", "999@1"))
        if rng is None
        else (SCENE_ROWS, [f"{900 + i}@{i}" for i in range(SCENE_ROWS)])
    )
    scenes = _scenes(rng, videos + len(names))
    captions = [s.caption() if s else f"a clip number {i}" for i, s in enumerate(scenes[:videos])]
    rows = [
        {"video_id": f"video{i}", "video": f"video{i}.mp4", "caption": captions[i]} for i in range(videos)
    ]
    _split(root, "video-tasks/MSR-VTT", "test_1k", "test", rows)
    for i, r in enumerate(rows):
        folder = root / FRAMES / "video_ret/data/ziyan/video_retrieval/MSR-VTT/frames" / r["video_id"]
        write_frames(folder, 8, i, scene=scenes[i])
    rows = [
        {"video": f"dd/{n}.mp4", "caption": s.caption() if s else f"scene {n}"}
        for n, s in zip(names, scenes[videos:])
    ]
    _split(root, "video-tasks/DiDeMo", None, "test", rows)
    for i, n in enumerate(names):
        write_frames(root / FRAMES / "video_ret/DiDeMo" / n, 20, seed=i, scene=scenes[videos + i])


def _moments(root: Path, rng: random.Random | None) -> None:
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


def write_beir(
    clone: Path, split: str, queries: list, corpus: list, qrels: list[tuple], scenes: list | None = None
) -> None:
    """A BEIR clone: `queries`, `corpus` (with an `image` feature struct) and `qrels` configs; with
    `scenes` (one per corpus page) a page shows its scene and a query is the caption of its best page."""
    scenes = scenes or [None] * len(corpus)
    texts = {q: f"question {q}" for q in queries}
    for q, c, score in sorted(qrels, key=lambda r: r[2]):  # the best-graded page last: its caption wins
        if score > 0 and c in corpus and scenes[corpus.index(c)] is not None:
            texts[q] = scenes[corpus.index(c)].caption()
    write_parquet(clone / "queries" / f"{split}-00000-of-00001.parquet",
                  [{"query-id": q, "query": texts[q]} for q in queries])  # fmt: skip
    schema = pa.schema([("corpus-id", pa.array(corpus).type), ("image", PAGE_IMAGE)])
    rows = [
        {"corpus-id": c, "image": {"bytes": page_png(i, scenes[i]), "path": None}}
        for i, c in enumerate(corpus)
    ]
    write_parquet(clone / "corpus" / f"{split}-00000-of-00001.parquet", rows, schema)
    write_parquet(clone / "qrels" / f"{split}-00000-of-00001.parquet",
                  [{"query-id": q, "corpus-id": c, "score": s} for q, c, s in qrels])  # fmt: skip


def _visdoc(root: Path, rng: random.Random | None) -> None:
    vd = root / "visdoc-tasks"
    n = 1 if rng is None else SCENE_ROWS // 2  # scenes: 2n queries, each with its own page among 4n
    corpus = list(range(10, 10 + 6 * n if rng is None else 10 + 4 * n))
    scenes = _scenes(rng, len(corpus))
    qrels = (
        [(1, 11, 1), (2, 14, 1), (2, 15, 0)]
        if rng is None
        else [(q, corpus[2 * q - 1], 1) for q in range(1, 2 * n + 1)]
    )
    write_beir(
        vd / "arxivqa_test_subsampled_beir", "test", sorted({q for q, _, _ in qrels}), corpus, qrels, scenes
    )
    for i, c in enumerate(corpus):
        (vd / "ViDoRe_arxivqa").mkdir(parents=True, exist_ok=True)
        (vd / "ViDoRe_arxivqa" / f"{c}.png").write_bytes(page_png(i, scenes[i]))
    files = (
        ["chart_a.png", "chart_b.png", "chart_c.png"]
        if rng is None
        else [f"chart_{k}.png" for k in range(4 * n)]
    )
    chart_qrels = (
        [("q1", "chart_b.png", 1), ("q2", "chart_c.png", 1)]
        if rng is None
        else [(f"q{k}", files[2 * k + 1], 1) for k in range(2 * n)]
    )
    write_beir(
        vd / "VisRAG-Ret-Test-ChartQA",
        "train",
        [q for q, _, _ in chart_qrels],
        files,
        chart_qrels,
        _scenes(rng, len(files)),
    )
    pages = list(range(1020, 1030 if rng is None else 1020 + 4 * n))
    scenes = _scenes(rng, len(pages))
    queries = [7, 8] if rng is None else list(range(7, 7 + 2 * n))
    qrels = (
        [(7, 1021, 1), (8, 1025, 1), (8, 1026, 1)]
        if rng is None
        else [(q, pages[2 * k + 1], 1) for k, q in enumerate(queries)]
    )
    write_beir(vd / "ViDoSeek-page-fixed", "test", queries, pages, qrels, scenes)
    (vd / "images/ViDoSeek-page").mkdir(parents=True, exist_ok=True)
    for i, c in enumerate(pages):
        (vd / "images/ViDoSeek-page" / f"{c}.png").write_bytes(page_png(i, scenes[i]))
    if rng is None:
        graded = [(7, p, 3 if p == 1021 else 2) for p in range(1020, 1025)] + [(8, 1025, 2), (8, 1026, 3)]
    else:
        graded = [(q, pages[2 * k + 1], 3) for k, q in enumerate(queries)] + [
            (q, pages[2 * k], 1) for k, q in enumerate(queries)
        ]
    write_beir(vd / "ViDoSeek", "test", queries, pages, graded, scenes)


def write_synthetic_v2(root: str | Path, *, scenes: bool = False, seed: int = 1) -> Path:
    """Write the synthetic V2 slice under `root` (see the module docstring); returns `root`.
    `scenes`: learnable scene content (drawn with `seed`) in the classification, retrieval and
    document tasks."""
    root = Path(root)
    rng = random.Random(seed) if scenes else None
    for part in (_classification, _qa, _retrieval, _moments, _visdoc):
        part(root, rng)
    return root
