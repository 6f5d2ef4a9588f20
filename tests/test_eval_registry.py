"""The 36-dataset registry: meta-task sizes, IND/OOD split, selection rules."""

import pytest

from vlm2vec.evaluation.registry import (
    MMEB_DATASETS,
    canonical_meta_task,
    dataset_info,
    datasets_of,
    select_datasets,
)


def test_registry_has_the_36_datasets_with_paper_group_sizes():
    assert len(MMEB_DATASETS) == 36
    sizes = {t: len(datasets_of(t)) for t in ("Classification", "VQA", "Retrieval", "Grounding")}
    assert sizes == {"Classification": 10, "VQA": 10, "Retrieval": 12, "Grounding": 4}
    splits = [d.split for d in MMEB_DATASETS.values()]
    assert splits.count("IND") == 20 and splits.count("OOD") == 16
    assert dataset_info("MSCOCO").split == "IND" and dataset_info("RefCOCO").split == "OOD"


def test_unknown_dataset_is_meta_task_other_without_split():
    info = dataset_info("MyOwnSet")
    assert (info.meta_task, info.split, info.in_mmeb) == ("other", None, False)


def test_select_all_a_meta_task_or_a_list():
    assert select_datasets(found=[*MMEB_DATASETS, "Extra"]) == [*MMEB_DATASETS, "Extra"]
    # the default selection is all 36 (absent ones included, for the caller to fail on or report) + extras
    assert select_datasets(found=["Extra", "OK-VQA", "ImageNet-1K"]) == [*MMEB_DATASETS, "Extra"]
    assert select_datasets(meta_tasks=["grd"]) == [
        "MSCOCO",
        "RefCOCO",
        "RefCOCO-Matching",
        "Visual7W-Pointing",
    ]
    assert select_datasets(datasets=["OK-VQA", "Extra"]) == ["OK-VQA", "Extra"]
    assert select_datasets(meta_tasks=["other"], found=["ImageNet-1K", "Extra"]) == ["Extra"]
    both = select_datasets(datasets=["OK-VQA"], meta_tasks=["Grounding"])
    assert both[-1] == "OK-VQA" and len(both) == 5


def test_unknown_meta_task_raises_naming_it():
    with pytest.raises(ValueError, match="Segmentation"):
        canonical_meta_task("Segmentation")
