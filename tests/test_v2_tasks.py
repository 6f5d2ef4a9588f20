"""The 78-task table and the published rows agree with the benchmark's facts and with each other."""

from collections import Counter

import pytest

from vlm2vec.evaluation.registry import MMEB_DATASETS
from vlm2vec.mmeb_v2.published import CURRENT, MODELS, PAPER, published_rows
from vlm2vec.mmeb_v2.tasks import TASKS, task, tasks_of


def test_78_tasks_split_36_18_24_with_paper_meta_task_sizes():
    assert len(TASKS) == 78
    assert Counter(t.modality for t in TASKS.values()) == {"image": 36, "video": 18, "visdoc": 24}
    sizes = Counter((t.modality, t.meta_task) for t in TASKS.values())
    assert [sizes["image", m] for m in ("Cls", "VQA", "Ret", "Grd")] == [10, 10, 12, 4]
    assert [sizes["video", m] for m in ("CLS", "QA", "RET", "MRET")] == [5, 5, 5, 3]
    assert [sizes["visdoc", m] for m in ("ViDoRe-v1", "ViDoRe-v2", "VisRAG", "OOD")] == [10, 4, 6, 4]


def test_image_tasks_are_the_v1_registry_names():
    assert {t.name for t in tasks_of("image")} == set(MMEB_DATASETS)


def test_headline_metric_is_hit1_for_image_and_video_and_ndcg5_for_documents():
    assert {t.metric for t in TASKS.values() if t.modality != "visdoc"} == {"hit@1"}
    assert {t.metric for t in tasks_of("visdoc")} == {"ndcg_linear@5"}


def test_pools_follow_the_reference_eval_types():
    glob = {t.name for t in TASKS.values() if t.pool == "global"}
    assert glob == {"K700", "HMDB51", "UCF101", "Breakfast", "DiDeMo", "MSR-VTT", "MSVD", "VATEX", "YouCook2"}
    assert {t.pool for t in tasks_of("visdoc")} == {"corpus"}


def test_page_tasks_default_to_the_page_fixed_repos_and_v2_sets_are_multilingual():
    assert task("ViDoSeek-page").repo == "VLM2Vec/ViDoSeek-page-fixed"
    assert task("MMLongBench-page").repo == "VLM2Vec/MMLongBench-page-fixed"
    assert task("ViDoRe_economics_reports_v2_multilingual").repo == "vidore/economics_reports_v2"
    assert (
        task("ViDoRe_esg_reports_v2_multilingual").frame_dirs[0] == "visdoc-tasks/esg_reports_v2_multilingual"
    )
    assert task("YouCook2").repo == "lmms-lab/YouCook2" and task("YouCook2").split == "val"
    assert task("MomentSeeker").num_queries == 1602


def test_unknown_task_suggests_the_spelling():
    with pytest.raises(KeyError, match="'K700'"):
        task("k700")


@pytest.mark.parametrize("data", [CURRENT, PAPER])
def test_published_per_dataset_means_reproduce_the_published_modality_scores(data):
    for row in published_rows(data):
        if not row.datasets:
            continue
        for modality in ("video", "visdoc"):
            values = [v for name, v in row.datasets.items() if TASKS[name].modality == modality]
            assert len(values) == {"video": 18, "visdoc": 24}[modality]
            if modality == "video" and data == CURRENT:
                continue  # the current aggregates keep MomentSeeker at 1,800 queries
            assert sum(values) / len(values) == pytest.approx(row.modalities[modality], abs=0.051), row.model


def test_published_overall_is_the_78_way_mean_of_the_modality_scores():
    for row in published_rows(PAPER):
        m = row.modalities
        weighted = (36 * m["image"] + 18 * m["video"] + 24 * m["visdoc"]) / 78
        # each input and the result are rounded to 0.1, so the sum may be off by up to 0.05 + 0.05
        assert weighted == pytest.approx(row.overall, abs=0.1), row.model


def test_published_rows_cover_the_five_models_and_leave_unknowns_empty():
    rows = published_rows()
    assert [r.model for r in rows] == list(MODELS)
    qwen3 = rows[-1]
    assert qwen3.datasets == {} and qwen3.overall == 77.8
    assert [r.model for r in published_rows(PAPER)] == list(MODELS[:4])
    assert published_rows(PAPER)[0].datasets["ViDoSeek-page"] == 21.9
    assert rows[0].datasets["ViDoSeek-page"] == 80.3
