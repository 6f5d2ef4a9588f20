"""The 36 MMEB evaluation datasets, their meta-task and IND/OOD split, and the published scores.

IND means the dataset's training split is part of MMEB-train; OOD means it is not. Any other folder in
the MMEB-eval format can be evaluated too: it gets meta-task `other`, no split, and is reported but kept
out of the MMEB aggregates (which are means over datasets, as in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError

CLASSIFICATION = "Classification"
VQA = "VQA"
RETRIEVAL = "Retrieval"
GROUNDING = "Grounding"
OTHER = "other"
META_TASKS: tuple[str, ...] = (CLASSIFICATION, VQA, RETRIEVAL, GROUNDING)
SHORT_NAMES = {CLASSIFICATION: "Cls", VQA: "VQA", RETRIEVAL: "Ret", GROUNDING: "Grd"}

_ALIASES = {
    "classification": CLASSIFICATION,
    "cls": CLASSIFICATION,
    "vqa": VQA,
    "retrieval": RETRIEVAL,
    "ret": RETRIEVAL,
    "grounding": GROUNDING,
    "visual grounding": GROUNDING,
    "visual_grounding": GROUNDING,
    "grd": GROUNDING,
    "other": OTHER,
}

_TABLE: dict[str, tuple[list[str], list[str]]] = {
    CLASSIFICATION: (
        ["ImageNet-1K", "N24News", "HatefulMemes", "VOC2007", "SUN397"],
        ["Place365", "ImageNet-A", "ImageNet-R", "ObjectNet", "Country211"],
    ),
    VQA: (
        ["OK-VQA", "A-OKVQA", "DocVQA", "InfographicsVQA", "ChartQA", "Visual7W"],
        ["ScienceQA", "VizWiz", "GQA", "TextVQA"],
    ),
    RETRIEVAL: (
        [
            "VisDial",
            "CIRR",
            "VisualNews_t2i",
            "VisualNews_i2t",
            "MSCOCO_t2i",
            "MSCOCO_i2t",
            "NIGHTS",
            "WebQA",
        ],
        ["FashionIQ", "Wiki-SS-NQ", "OVEN", "EDIS"],
    ),
    GROUNDING: (["MSCOCO"], ["RefCOCO", "RefCOCO-Matching", "Visual7W-Pointing"]),
}


@dataclass(frozen=True)
class DatasetInfo:
    """Where a dataset sits in the MMEB tables; `split` is None for datasets outside MMEB."""

    name: str
    meta_task: str
    split: str | None  # "IND" | "OOD" | None

    @property
    def in_mmeb(self) -> bool:
        return self.meta_task != OTHER


MMEB_DATASETS: dict[str, DatasetInfo] = {
    name: DatasetInfo(name, task, split)
    for task, (ind, ood) in _TABLE.items()
    for split, names in (("IND", ind), ("OOD", ood))
    for name in names
}


def dataset_info(name: str) -> DatasetInfo:
    """Registry entry for `name`; unknown names are evaluated as meta-task `other`."""
    return MMEB_DATASETS.get(name) or DatasetInfo(name, OTHER, None)


def canonical_meta_task(name: str) -> str:
    """Accept `Classification`, `cls`, `visual grounding`, ... and return the canonical name."""
    key = name.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    raise ConfigError(
        f"eval.meta_tasks: unknown meta-task {name!r}; valid: {', '.join(META_TASKS + (OTHER,))} (or Cls/Ret/Grd)",
        key="eval.meta_tasks",
    )


def datasets_of(meta_task: str) -> list[str]:
    """The registered datasets of one meta-task, IND first, in the paper's order."""
    task = canonical_meta_task(meta_task)
    return [d.name for d in MMEB_DATASETS.values() if d.meta_task == task]


def select_datasets(
    datasets: list[str] | None = None, meta_tasks: list[str] | None = None, found: list[str] | None = None
) -> list[str]:
    """Resolve what to run: a list, some meta-tasks (the union of both), or, with neither, the default
    selection: all 36 MMEB datasets (in the paper's order) plus every other dataset folder `found`.

    `found` lists the dataset folders present on disk; unregistered ones belong to meta-task `other`,
    which `meta_tasks=["other"]` selects. Selected datasets are returned even when absent from
    `found`, so the caller can fail on them or report them missing: the default selection of a folder
    that lacks some MMEB datasets is a partial run, never a silently smaller "overall".
    """
    found = list(found or [])
    extras = [n for n in found if n not in MMEB_DATASETS]
    selected: list[str] = []
    if not datasets and not meta_tasks:
        selected = [*MMEB_DATASETS, *extras]
    for task in meta_tasks or []:
        selected += extras if canonical_meta_task(task) == OTHER else datasets_of(task)
    selected += list(datasets or [])
    return list(dict.fromkeys(selected))  # de-duplicate, keep order


#: REFERENCE.md §3: published MMEB Precision@1 (%), means over datasets. None = not published.
PUBLISHED_RESULTS: dict[str, dict[str, float | None]] = {
    "CLIP (zero-shot)": {
        CLASSIFICATION: 42.8,
        VQA: 9.1,
        RETRIEVAL: 53.0,
        GROUNDING: 51.8,
        "IND": None,
        "OOD": None,
        "overall": 37.8,
    },
    "E5-V": {
        CLASSIFICATION: 21.8,
        VQA: 4.9,
        RETRIEVAL: 11.5,
        GROUNDING: 19.0,
        "IND": 14.9,
        "OOD": 11.5,
        "overall": 13.3,
    },
    "VLM2Vec Phi-3.5-V LoRA": {
        CLASSIFICATION: 54.8,
        VQA: 54.9,
        RETRIEVAL: 62.3,
        GROUNDING: 79.5,
        "IND": 66.5,
        "OOD": 52.0,
        "overall": 60.1,
    },
    "VLM2Vec Phi-3.5-V full": {
        CLASSIFICATION: 52.8,
        VQA: 50.3,
        RETRIEVAL: 57.8,
        GROUNDING: 72.3,
        "IND": 62.8,
        "OOD": 47.4,
        "overall": 55.9,
    },
    "VLM2Vec LLaVA-1.6 LoRA high-res": {
        CLASSIFICATION: 61.2,
        VQA: 49.9,
        RETRIEVAL: 67.4,
        GROUNDING: 86.1,
        "IND": 67.5,
        "OOD": 57.1,
        "overall": 62.9,
    },
    "VLM2Vec Qwen2-VL-7B LoRA": {
        CLASSIFICATION: 62.6,
        VQA: 57.8,
        RETRIEVAL: 69.9,
        GROUNDING: 81.7,
        "IND": 72.2,
        "OOD": 57.8,
        "overall": 65.8,
    },
    "UniME (best published on Phi-3.5-V)": {
        CLASSIFICATION: None,
        VQA: None,
        RETRIEVAL: None,
        GROUNDING: None,
        "IND": None,
        "OOD": None,
        "overall": 64.2,
    },
    "Qwen3-VL-Embedding-8B (best published)": {
        CLASSIFICATION: None,
        VQA: None,
        RETRIEVAL: None,
        GROUNDING: None,
        "IND": None,
        "OOD": None,
        "overall": 80.1,
    },
}
