"""Readers of the 18 MMEB-V2 video tasks: annotation rows and released frame folders -> `TaskData`.

Each parser follows the reference's columns, candidate names and frame-folder naming for its task
family (MMEB-V2.md §2.2-2.3). Query texts hold the task's data part (caption, question and options,
moment query); the instruction is prepended by the prompt layer. Frame folders are not opened here:
`check_videos` validates them all before encoding, naming task, row and video on a missing one.
The classification tasks rank their class list when one is given (`label_pool`; the reference ranks
a hard-coded list of 700 / 51 / 101 / 10 classes), else the distinct labels of their rows, which may
be fewer than the reference's list and is counted.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import DataError, DataNotFoundError
from .frames import FrameSelection, VideoRef, select_frames
from .layouts import clone_identity, configs_with_split, read_rows, read_split, require_columns, split_files
from .records import Candidate, Query, TaskData, add_candidate
from .tasks import Task
from .versions import momentseeker_version

Rows = list[dict[str, Any]]
_LETTERS = "ABCDEFGHIJ"


def _text_candidates(data: TaskData, texts: list[str]) -> tuple[str, ...]:
    for text in texts:
        add_candidate(data.candidates, Candidate(text, text=text))
    return tuple(texts)


def _classification(rows: Rows, fr: Path, data: TaskData) -> None:
    for i, r in enumerate(rows, 1):
        label = str(r["pos_text"])
        _text_candidates(data, [label])
        vid = str(r["video_id"])
        data.queries.append(Query(i, "", {label: 1.0}, video=fr / vid, video_id=vid))


def _ssv2(rows: Rows, fr: Path, data: TaskData) -> None:
    for i, r in enumerate(rows, 1):
        names = _text_candidates(data, [str(t) for t in r["neg_text"]])
        if r["pos_text"] not in names:
            data.count("positive not among the row's candidates")
        vid = str(r["video_id"])
        data.queries.append(Query(i, "", {r["pos_text"]: 1.0}, fr / vid, candidates=names, video_id=vid))


def _retrieval(name_of: Callable[[dict], str], text_of: Callable[[dict], str]):
    """A text -> video task: one video per row, named (and its frame folder named) by `name_of`."""

    def parse(rows: Rows, fr: Path, data: TaskData) -> None:
        for i, r in enumerate(rows, 1):
            name = name_of(r)
            if not add_candidate(data.candidates, Candidate(name, video=fr / name)):
                data.count("video listed by more than one row")
            data.queries.append(Query(i, text_of(r), {name: 1.0}, video_id=name))

    return parse


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _option_text(option: str) -> str:
    """`A. Apples.` -> `Apples`: the prefix up to the first `. ` removed, dots and spaces stripped."""
    head, sep, rest = option.partition(". ")
    return (rest if sep else head).strip(" .")


def _options_block(question: str, options: list[str]) -> str:
    lines = "\n".join(f"({_LETTERS[i]}) {o}" for i, o in enumerate(options))
    return f"{question}\nOptions:\n{lines}".rstrip()


def _qa(data: TaskData, i: int, fr: Path, folder: str, text: str, cands: list[Candidate], answer: int):
    for c in cands:
        add_candidate(data.candidates, c)
    names = tuple(c.name for c in cands)
    if not 0 <= answer < len(names):
        raise DataError(
            f"task {data.task.name!r}, row {i}: answer index {answer} outside {len(names)} options"
        )
    data.queries.append(Query(i, text, {names[answer]: 1.0}, fr / folder, candidates=names, video_id=folder))


def _videomme(rows: Rows, fr: Path, data: TaskData) -> None:
    for i, r in enumerate(rows, 1):
        opts = [str(o) for o in r["options"]]
        cands = [Candidate(o, text=_option_text(o)) for o in opts]
        text = r["question"] + "\n" + "\n".join(opts)
        _qa(data, i, fr, str(r["videoID"]), text, cands, _LETTERS.index(str(r["answer"]).strip()))


def _nextqa(rows: Rows, fr: Path, data: TaskData) -> None:
    for i, r in enumerate(rows, 1):
        opts = [str(r[f"a{j}"]) for j in range(5)]
        text = _options_block(r["question"], opts)
        _qa(data, i, fr, str(r["video"]), text, [Candidate(o, text=o) for o in opts], int(r["answer"]))


def _egoschema(rows: Rows, fr: Path, data: TaskData) -> None:
    for i, r in enumerate(rows, 1):
        opts = [str(o) for o in r["option"]]
        cands = [Candidate(o, text=_option_text(o)) for o in opts]
        _qa(data, i, fr, str(r["video_idx"]), r["question"] + " ".join(opts), cands, int(r["answer"]))


def _activitynetqa(rows: Rows, fr: Path, data: TaskData) -> None:
    for i, r in enumerate(rows, 1):
        cands = [Candidate("yes", text="yes"), Candidate("no", text="no")]
        text = f"{r['question']}? (A) yes; (B) no."
        _qa(data, i, fr, f"v_{r['video_name']}", text, cands, ["yes", "no"].index(str(r["answer"])))


def _mvbench(rows: Rows, fr: Path, data: TaskData) -> None:
    for i, r in enumerate(rows, 1):
        opts = [f"({_LETTERS[j]}) {c}" for j, c in enumerate(r["candidates"])]
        text = _options_block(r["question"], list(r["candidates"]))
        folder = f"{r['subset']}/{r['video']}"
        _qa(
            data,
            i,
            fr,
            folder,
            text,
            [Candidate(o, text=o) for o in opts],
            list(r["candidates"]).index(r["answer"]),
        )


def _moment_retrieval(rows: Rows, fr: Path, data: TaskData) -> None:
    for i, r in enumerate(rows, 1):
        video = fr / _stem(str(r["video_path"]))
        clips = [video / d for d in os.listdir(video) if d != "query"] if video.is_dir() else []
        clips = [c for c in clips if c.is_dir()]
        positives = [c for c in clips if c.name.startswith("positive")]
        if not positives:
            raise DataError(
                f"task {data.task.name!r}, row {i}, video {video.name!r}: no clip folder named positive* "
                f"under {str(video)!r}"
            )
        if len(positives) > 1:
            data.count("queries with several positive* clips (the last listed is the label)")
        names = tuple(str(c) for c in clips)
        for c in clips:
            add_candidate(data.candidates, Candidate(str(c), video=c))
        label = {str(positives[-1]): 1.0}
        data.queries.append(Query(i, str(r["query"]), label, video / "query", None, names, video.name))


def _clip_folder(fr: Path, output_path: str) -> Path:
    return fr / "video_frames" / output_path.replace("/", "_").replace(".mp4", "")


def _momentseeker(rows: Rows, fr: Path, data: TaskData) -> None:
    for i, r in enumerate(rows, 1):
        pos = [_clip_folder(fr, f["output_path"]) for f in r["positive_frames"]]
        neg = [_clip_folder(fr, f["output_path"]) for f in r["negative_frames"]]
        for c in pos + neg:
            add_candidate(data.candidates, Candidate(str(c), video=c))
        source = str(r.get("input_frames") or "")
        video = _clip_folder(fr, source) if source.endswith(".mp4") else None
        image = fr / f"query_{source}" if source.endswith(".jpg") else None
        names = tuple(str(c) for c in pos + neg)
        data.queries.append(
            Query(i, str(r["query"]), {str(c): 1.0 for c in pos}, video, image, names, video_id=source)
        )
    data.all_frames = True


PARSERS: dict[str, tuple[tuple[str, ...], Callable[[Rows, Path, TaskData], None]]] = {
    "video_classification": (("video_id", "pos_text"), _classification),
    "ssv2": (("video_id", "pos_text", "neg_text"), _ssv2),
    "msrvtt": (("video_id", "caption"), _retrieval(lambda r: str(r["video_id"]), lambda r: r["caption"])),
    "msvd": (("video_id", "caption"), _retrieval(lambda r: str(r["video_id"]), lambda r: r["caption"][0])),
    "didemo": (("video", "caption"), _retrieval(lambda r: _stem(r["video"]), lambda r: r["caption"])),
    "youcook2": (("id", "sentence"), _retrieval(lambda r: str(r["id"]), lambda r: r["sentence"])),
    "vatex": (("videoID", "enCap"), _retrieval(lambda r: str(r["videoID"]), lambda r: r["enCap"][0])),
    "videomme": (("question", "videoID", "options", "answer"), _videomme),
    "nextqa": (("video", "question", "answer", "a0", "a4"), _nextqa),
    "egoschema": (("video_idx", "question", "answer", "option"), _egoschema),
    "activitynetqa": (("video_name", "question", "answer"), _activitynetqa),
    "mvbench": (("subset", "question", "video", "candidates", "answer"), _mvbench),
    "moment_retrieval": (("query", "video_path"), _moment_retrieval),
    "momentseeker": (("query", "positive_frames", "negative_frames"), _momentseeker),
}


def _mvbench_rows(task: Task, clone: Path) -> tuple[Rows, list[Path]]:
    """MVBench concatenates every config of the split and adds their name as column `subset`."""
    rows: Rows = []
    files: list[Path] = []
    for config in configs_with_split(clone, task.split):
        part = split_files(clone, config, task.split)
        rows += [{**r, "subset": config} for r in read_rows(part)]
        files += part
    if not files:
        raise DataError(f"task 'MVBench': no config folder with {task.split!r} files in {str(clone)!r}")
    return rows, files


def _use_label_pool(data: TaskData, label_pool: list[str] | None) -> None:
    if label_pool is None:
        data.count("class labels taken from the rows (no class list given)", len(data.candidates))
        return
    known = set(label_pool)
    unknown = [label for label in data.candidates if label not in known]
    if unknown:
        raise DataError(f"task {data.task.name!r}: labels {unknown[:5]} are not in the given class list")
    data.candidates = {label: Candidate(label, text=label) for label in dict.fromkeys(label_pool)}


def read_video_task(
    task: Task,
    clone: Path,
    frame_root: Path,
    layout: str = "reference",
    allow_old: bool = False,
    label_pool: list[str] | None = None,
) -> TaskData:
    """Read one video task from its annotation clone and frame root (validated by `check_videos`);
    `label_pool` is the class list a classification task ranks."""
    if label_pool is not None and task.parser != "video_classification":
        raise ValueError(f"task {task.name!r}: a class list applies only to the classification tasks")
    if task.parser == "mvbench":
        rows, files = _mvbench_rows(task, clone)
    else:
        rows, files = read_split(task.name, clone, task.config, task.split)
    if task.name == "SmthSmthV2":
        rows = rows[:1000]  # num_sample_per_subset: 1000
    columns, parse = PARSERS[task.parser]
    require_columns(task.name, rows, columns, files)
    version = clone_identity(clone)
    if task.parser == "momentseeker":
        pairs = [(str(r["query"]), str(r.get("input_frames") or "")) for r in rows]
        version += f"#{momentseeker_version(pairs, allow_old)}"
    data = TaskData(task, [], {}, version, layout, files=files)
    try:
        parse(rows, frame_root, data)
    except DataError:
        raise
    except (KeyError, ValueError, IndexError, TypeError, AttributeError) as exc:
        row = len(data.queries) + 1
        raise DataError(
            f"task {task.name!r}, row {row} of {str(files[0])!r}: malformed annotation: {exc!r}"
        ) from exc
    if task.parser == "video_classification":
        _use_label_pool(data, label_pool)
    return data


def check_videos(data: TaskData, num_frames: int | None = 8) -> dict[str, int]:
    """Select the frames of every query and candidate video (raising on a missing or empty folder) and
    count the videos with fewer frames than asked for; returns the counts added to `data.counts`."""
    frames = None if data.all_frames else num_frames
    selections: list[FrameSelection] = []
    for q in data.queries:
        ref = VideoRef(data.task.name, q.row, q.video_id)
        if q.video is not None:
            selections.append(select_frames(q.video, ref, frames))
        if q.image is not None and not q.image.is_file():
            raise DataNotFoundError(f"{ref.describe()}: query image not found: {str(q.image)!r}")
    rows = _first_rows(data)
    for name, cand in data.candidates.items():
        if cand.video is not None:
            ref = VideoRef(data.task.name, rows.get(name, 0), cand.video.name)
            selections.append(select_frames(cand.video, ref, frames))
    data.counts["videos checked"] = len(selections)
    if frames is not None:
        data.counts[f"videos with fewer than {frames} frames (all used)"] = sum(
            s.is_short(frames) for s in selections
        )
    return data.counts


def _first_rows(data: TaskData) -> dict[Any, int]:
    """Row of the first query that ranks each candidate (for error messages)."""
    rows: dict[Any, int] = {}
    for q in data.queries:
        for name in (*q.candidates, *q.relevant):
            rows.setdefault(name, q.row)
    return rows
