"""MMEB-V2 aggregates (meta-task, modality, overall) and the leaderboard's submission JSON.

Every aggregate is the plain mean of its datasets' headline scores, as the paper computes it: a
modality is the mean of its 36 / 18 / 24 datasets (not of its meta-tasks) and the overall score the
mean of all 78 (so the modalities weigh 36:18:24). A mean over fewer datasets than its group holds is
marked partial with its coverage n/of, because the reference's report silently averages whatever
score files exist and a missing dataset then changes the mean.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic_files import atomic_write_json
from .tasks import META_TASKS, MODALITIES, TASKS, Task

#: the leaderboard's two renamed page tasks (reference main since 2026-01-27)
FIXED_PAGE_NAMES = {"ViDoSeek-page": "ViDoSeek-page-fixed", "MMLongBench-page": "MMLongBench-page-fixed"}
#: metadata fields of the submission template; `model_name` is mandatory
METADATA_FIELDS = (
    "model_name",
    "model_backbone",
    "model_size",
    "embedding_dimension",
    "max_length_tokens",
    "model_release_date",
    "data_source",
    "url",
)
MISSING_FILE = "FILE_N/A"


@dataclass(frozen=True)
class Mean:
    """Mean of the scored datasets of a group; `value` is None when none of its `of` is scored."""

    value: float | None
    n: int
    of: int

    @property
    def partial(self) -> bool:
        return self.n < self.of

    def describe(self, digits: int = 1) -> str:
        """E.g. ``58.0`` or ``61.2 (partial 40/78)``; ``n/a (0/18)`` when nothing is scored."""
        if self.value is None:
            return f"n/a (0/{self.of})"
        text = f"{self.value:.{digits}f}"
        return f"{text} (partial {self.n}/{self.of})" if self.partial else text


@dataclass(frozen=True)
class Aggregates:
    datasets: dict[str, float]
    meta_tasks: dict[tuple[str, str], Mean]
    modalities: dict[str, Mean]
    overall: Mean

    @property
    def partial(self) -> bool:
        return self.overall.partial


def _mean(tasks: list[Task], scores: Mapping[str, float]) -> Mean:
    values = [float(scores[t.name]) for t in tasks if t.name in scores]
    return Mean(sum(values) / len(values) if values else None, len(values), len(tasks))


def aggregate(scores: Mapping[str, float]) -> Aggregates:
    """Aggregate headline scores keyed by task name; a name outside the 78 raises `KeyError`."""
    unknown = [name for name in scores if name not in TASKS]
    if unknown:
        raise KeyError(f"not MMEB-V2 tasks: {', '.join(map(repr, unknown))}")
    tasks = list(TASKS.values())
    meta = {
        (mod, m): _mean([t for t in tasks if t.modality == mod and t.meta_task == m], scores)
        for mod in MODALITIES
        for m in META_TASKS[mod]
    }
    modalities = {mod: _mean([t for t in tasks if t.modality == mod], scores) for mod in MODALITIES}
    ordered = {t.name: float(scores[t.name]) for t in tasks if t.name in scores}
    return Aggregates(ordered, meta, modalities, _mean(tasks, scores))


def submission(
    score_files: Mapping[str, Mapping[str, Any]],
    metadata: Mapping[str, Any],
    *,
    fixed_page_names: bool = False,
    date: datetime.date | None = None,
) -> dict[str, Any]:
    """The leaderboard JSON: ``{"metadata": ..., "metrics": {modality: {task: score dict}}}``.

    `score_files` maps task names to their reference-style score dicts (see
    `metrics.reference_score_dict`); a task without one is written as ``"FILE_N/A"``, as the
    reference's report does. `fixed_page_names` writes the two page tasks under their `-fixed` names.
    """
    unknown = [k for k in metadata if k not in METADATA_FIELDS]
    if unknown:
        raise ValueError(f"unknown metadata fields {unknown}; valid: {', '.join(METADATA_FIELDS)}")
    if not metadata.get("model_name"):
        raise ValueError("metadata field 'model_name' is mandatory")
    bad = [name for name in score_files if name not in TASKS]
    if bad:
        raise KeyError(f"not MMEB-V2 tasks: {', '.join(map(repr, bad))}")
    metrics: dict[str, dict[str, Any]] = {mod: {} for mod in MODALITIES}
    for t in TASKS.values():
        key = FIXED_PAGE_NAMES.get(t.name, t.name) if fixed_page_names else t.name
        metrics[t.modality][key] = dict(score_files[t.name]) if t.name in score_files else MISSING_FILE
    meta = dict(metadata)
    meta["report_generated_date"] = (date or datetime.date.today()).isoformat()
    return {"metadata": meta, "metrics": metrics}


def write_submission(path: str | os.PathLike, data: Mapping[str, Any]) -> Path:
    """Write a `submission` dict atomically as JSON."""
    return atomic_write_json(path, dict(data))
