"""Which MMEB-V2 tasks a V2 run asks for and where their data is, from the `eval` settings alone.

A V2 run reads its video and visual-document tasks from the release root (`eval.v2_root`, with
`eval.v2_sources` replacing single folders) through `mmeb_v2.locate`, and its 36 image tasks from the
MMEB-eval folder the V1 evaluator reads (`eval.data_dir`), so the image block is scored exactly as
today. Both are reported in one list, in the 78-task order, with what is missing and what to download;
nothing here opens a model or decodes a frame, so `vlm2vec data` can run before any download ends.
"""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigError, EvalConfig
from ..errors import DataNotFoundError
from ..mmeb_v2.locate import Located, format_locations, locate
from ..mmeb_v2.tasks import IMAGE, MODALITIES, TASKS
from .mmeb_eval import find_datasets

#: what a root must hold at least one of to be a MMEB-V2 release root
RELEASE_FOLDERS = ("image-tasks", "video-tasks", "visdoc-tasks")
IMAGE_DOWNLOAD = "hub dataset TIGER-Lab/MMEB-eval (folder {name}; images.zip) into eval.data_dir"


def selected_tasks(eval_cfg: EvalConfig) -> list[str]:
    """Task names of `eval.v2_tasks` (names or modalities) in the 78-task order; [] selects all."""
    asked = set(eval_cfg.v2_tasks)
    if not asked:
        return list(TASKS)
    return [n for n, t in TASKS.items() if n in asked or t.modality in asked]


def check_v2_root(eval_cfg: EvalConfig) -> Path | None:
    """The release root, or None when only image tasks are asked for and none is set; a root that
    does not exist or holds none of the release folders (and no override replaces them) raises."""
    names = selected_tasks(eval_cfg)
    if eval_cfg.v2_root is None:
        if any(TASKS[n].modality != IMAGE for n in names):
            raise ConfigError(
                "eval.v2_root is not set: point it at the local MMEB-V2 release", key="eval.v2_root"
            )
        return None
    root = Path(eval_cfg.v2_root).resolve()  # frame and page paths are absolute, whatever the cwd later
    if not root.is_dir():
        raise DataNotFoundError(f"eval.v2_root {str(root)!r} does not exist")
    if not eval_cfg.v2_sources and not any((root / f).is_dir() for f in RELEASE_FOLDERS):
        inside = sorted(p.name for p in root.iterdir())[:8]
        raise DataNotFoundError(
            f"eval.v2_root {str(root)!r} holds none of {', '.join(RELEASE_FOLDERS)} (it has {inside}); "
            "point it at the folder the TIGER-Lab/MMEB-V2 archives were extracted into"
        )
    return root


def _image_located(names: list[str], eval_cfg: EvalConfig) -> dict[str, Located]:
    present = set(find_datasets(eval_cfg.data_dir)) if eval_cfg.data_dir and names else set()
    out = {}
    for name in names:
        found = Located(TASKS[name])
        if name in present:
            found.annotations = Path(eval_cfg.data_dir or "") / name
            found.media = Path(eval_cfg.image_root or eval_cfg.data_dir or "")
            found.media_layout = "MMEB-eval folder (eval.data_dir)"
            found.data_version = "TIGER-Lab/MMEB-eval"
        else:
            where = (
                f"not in eval.data_dir {eval_cfg.data_dir!r}"
                if eval_cfg.data_dir
                else "eval.data_dir not set"
            )
            found.problems.append(where)
            found.downloads.append(IMAGE_DOWNLOAD.format(name="<Dataset>"))
        out[name] = found
    return out


def locate_v2(eval_cfg: EvalConfig) -> list[Located]:
    """What was found for every selected task, in the 78-task order."""
    names = selected_tasks(eval_cfg)
    root = check_v2_root(eval_cfg)
    images = _image_located([n for n in names if TASKS[n].modality == IMAGE], eval_cfg)
    others = [n for n in names if TASKS[n].modality != IMAGE]
    found: dict[str, Located] = dict(images)
    if others:
        try:
            sources = {key: str(Path(folder).resolve()) for key, folder in eval_cfg.v2_sources.items()}
            located = locate(root or Path().resolve(), sources, others, eval_cfg.allow_old_data)
        except KeyError as exc:
            raise ConfigError(str(exc.args[0]), key="eval.v2_sources") from None
        found.update({f.task.name: f for f in located})
    return [found[n] for n in names]


def format_data_report(found: list[Located]) -> str:
    """The per-task listing, then how many of the 78 (and of each modality) are present."""
    ready = [f for f in found if f.ready]
    per_modality = ", ".join(
        f"{m} {sum(f.task.modality == m for f in ready)}/{sum(t.modality == m for t in TASKS.values())}"
        for m in MODALITIES
    )
    summary = f"{len(ready)} of {len(TASKS)} MMEB-V2 tasks present ({per_modality})"
    if len(found) < len(TASKS):
        summary += f"; {len(ready)} of the {len(found)} asked for"
    return f"{format_locations(found)}\n{summary}"
