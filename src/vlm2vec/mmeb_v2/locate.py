"""Where each MMEB-V2 task's data is under one data root, what is missing, and what to download.

One documented root holds the release in its published layout: `image-tasks/`, `video-tasks/frames/
{video_cls,video_ret,video_mret,video_qa}/...`, `visdoc-tasks/<task>/` (or `visdoc-tasks/images/<task>/`)
page images, and the annotation clones as `video-tasks/<repo name>` / `visdoc-tasks/<repo name>` (the
task's score-file name is accepted too). Overrides replace one source: a frame archive's folder
(`video_cls`, `video_ret`, `video_mret`, `video_qa`), the page folders (`visdoc-pages`), the image
folders (`image-tasks`), the root of the annotation clones (`annotations`), or one task's clone
(`<task>`) or media folder (`<task>:media`). `locate` opens no model and reads only file names,
parquet schemas and the few columns that tell a data version apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from ..errors import DataError
from .layouts import clone_identity, configs_with_split, read_rows, split_files
from .records import TaskData
from .tasks import IMAGE, IMAGE_ANNOTATIONS, RELEASE_REPO, TASKS, VIDEO, VISDOC, Task
from .versions import OLD_PAGE_SOURCES, DataVersionError, momentseeker_version, page_version
from .video_readers import read_video_task
from .visdoc_readers import read_visdoc_task

SOURCE_KEYS = (
    "video_cls",
    "video_ret",
    "video_mret",
    "video_qa",
    "visdoc-pages",
    "image-tasks",
    "annotations",
)
LAYOUTS = ("reference layout", "Qwen3-port layout")


@dataclass
class Located:
    """What `locate` found for one task; `problems` empty means the task can be read."""

    task: Task
    annotations: Path | None = None
    media: Path | None = None
    media_layout: str = ""
    data_version: str = ""
    problems: list[str] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.problems


def _check_overrides(overrides: Mapping[str, str | os.PathLike]) -> None:
    bad = [k for k in overrides if k not in SOURCE_KEYS and k.removesuffix(":media") not in TASKS]
    if bad:
        raise KeyError(f"unknown data overrides {bad}; valid: {', '.join(SOURCE_KEYS)}, <task>, <task>:media")


def _clone_names(task: Task) -> list[str]:
    names = [
        task.repo.split("/")[-1],
        task.name,
        task.frame_dirs[0].split("/")[-1] if task.frame_dirs else "",
    ]
    names += [n.split("/")[-1] for n in OLD_PAGE_SOURCES.get(task.name, ())]
    return [n for n in dict.fromkeys(names) if n]


def _is_clone(task: Task, folder: Path) -> bool:
    if task.modality == VISDOC:
        return bool(split_files(folder, "queries", task.split))
    if task.parser == "mvbench":
        return bool(configs_with_split(folder, task.split))
    return bool(
        split_files(folder, task.config or (task.name if task.modality == IMAGE else None), task.split)
    )


def _find_clone(task: Task, root: Path, overrides: Mapping) -> Path | None:
    if task.name in overrides:
        return Path(overrides[task.name])
    base = Path(overrides.get("annotations", root))
    if task.modality == IMAGE:
        folders = [base / "image-tasks" / "MMEB_Test_Instruct", base / "MMEB_Test_Instruct"]
    else:
        folders = [base / f"{task.modality}-tasks" / n for n in _clone_names(task)]
    return next((f for f in folders if _is_clone(task, f)), None)


def _media_candidates(task: Task, root: Path, overrides: Mapping) -> list[tuple[Path, str]]:
    if f"{task.name}:media" in overrides:
        return [(Path(overrides[f"{task.name}:media"]), "override")]
    out = []
    for rel, layout in zip(task.frame_dirs, LAYOUTS):
        parts = rel.split("/")
        if task.modality == VIDEO and parts[2] in overrides:
            path = Path(overrides[parts[2]]).joinpath(*parts[3:])
        elif task.modality == VISDOC and "visdoc-pages" in overrides:
            path = Path(overrides["visdoc-pages"]).joinpath(*parts[1:])
        elif task.modality == IMAGE:
            path = Path(overrides.get("image-tasks", root / "image-tasks")) / task.name
        else:
            path = root.joinpath(*parts)
        out.append((path, layout))
    return out


def _version(task: Task, clone: Path, allow_old: bool) -> str:
    identity = clone_identity(clone)
    if task.name in OLD_PAGE_SOURCES:
        return f"{identity}#{page_version(task.name, identity, allow_old)}"
    if task.parser == "momentseeker":
        rows = read_rows(split_files(clone, task.config, task.split))
        pairs = [(str(r.get("query")), str(r.get("input_frames") or "")) for r in rows]
        return f"{identity}#{momentseeker_version(pairs, allow_old)}"
    return identity


def _corpus_has_images(task: Task, clone: Path) -> bool:
    files = split_files(clone, "corpus", task.split)
    return bool(files) and "image" in pq.read_schema(files[0]).names


def locate_task(task: Task, root: Path, overrides: Mapping, allow_old: bool = False) -> Located:
    """Find one task's annotation clone and media folder; list problems and downloads."""
    found = Located(task)
    found.annotations = _find_clone(task, root, overrides)
    if found.annotations is None:
        repo = IMAGE_ANNOTATIONS if task.modality == IMAGE else task.repo
        found.problems.append("annotations not found")
        found.downloads.append(f"hub dataset {repo} (config {task.config or 'default'}, split {task.split})")
    else:
        try:
            found.data_version = _version(task, found.annotations, allow_old)
        except DataVersionError as exc:
            found.problems.append(str(exc))
    for path, layout in _media_candidates(task, root, overrides):
        if path.is_dir() and any(path.iterdir()):
            found.media, found.media_layout = path, layout
            break
    if found.media is None and task.modality == VISDOC and found.annotations is not None:
        if _corpus_has_images(task, found.annotations):
            found.media, found.media_layout = (
                _media_candidates(task, root, overrides)[0][0],
                "written from corpus",
            )
    if found.media is None:
        searched = ", ".join(str(p) for p, _ in _media_candidates(task, root, overrides))
        found.problems.append(f"media not found (searched {searched})")
        found.downloads.append(f"{RELEASE_REPO}: {task.archive}")
    return found


def locate(
    root: str | os.PathLike,
    overrides: Mapping[str, str | os.PathLike] | None = None,
    tasks: list[str] | None = None,
    allow_old: bool = False,
) -> list[Located]:
    """Locate every task (or `tasks`) under `root`, in the 78-task order."""
    overrides = dict(overrides or {})
    _check_overrides(overrides)
    names = tasks or list(TASKS)
    return [locate_task(TASKS[n], Path(root), overrides, allow_old) for n in names]


def format_locations(found: list[Located]) -> str:
    """A per-task listing: found (with layout and version) or missing, then the downloads needed."""
    lines = [f"{sum(f.ready for f in found)}/{len(found)} tasks ready"]
    for f in found:
        if f.ready:
            lines.append(
                f"  ok       {f.task.name}: {f.annotations} | {f.media} ({f.media_layout}) | {f.data_version}"
            )
        else:
            lines.append(f"  MISSING  {f.task.name}: {'; '.join(f.problems)}")
    downloads = sorted({d for f in found for d in f.downloads})
    if downloads:
        lines.append("to download:")
        lines += [f"  {d}" for d in downloads]
    return "\n".join(lines)


def read_task(
    found: Located,
    *,
    allow_old: bool = False,
    skip_unjudged: bool = False,
    label_pool: list[str] | None = None,
) -> TaskData:
    """Read a located video or visual-document task (image tasks are read by the V1 evaluator);
    `label_pool` is the class list of a video classification task."""
    if not found.ready:
        raise DataError(f"task {found.task.name!r} is not ready: {'; '.join(found.problems)}")
    assert found.annotations is not None and found.media is not None
    if found.task.modality == VIDEO:
        return read_video_task(
            found.task, found.annotations, found.media, found.media_layout, allow_old, label_pool
        )
    if found.task.modality == VISDOC:
        return read_visdoc_task(
            found.task,
            found.annotations,
            found.media,
            found.media_layout,
            allow_old=allow_old,
            skip_unjudged=skip_unjudged,
        )
    raise ValueError(f"task {found.task.name!r}: image tasks are read by vlm2vec.evaluation.mmeb_eval")
