"""MMEB-V2 aggregation: plain means over datasets, 78-way overall, partial coverage, submission JSON."""

import datetime
import json

import pytest

from vlm2vec.mmeb_v2.aggregate import aggregate, submission, write_submission
from vlm2vec.mmeb_v2.tasks import TASKS, tasks_of


def _scores(image, video, visdoc):
    value = {"image": image, "video": video, "visdoc": visdoc}
    return {t.name: value[t.modality] for t in TASKS.values()}


def test_overall_is_the_78_way_dataset_mean_not_the_mean_of_modalities():
    # MMEB-V2.md §1.1: V2.0-2B (36*64.85 + 18*34.58 + 24*65.36) / 78 = 58.02; modality mean 54.9
    agg = aggregate(_scores(64.85, 34.58, 65.36))
    assert agg.overall.value == pytest.approx(58.02, abs=0.005)
    assert agg.overall.value != pytest.approx((64.85 + 34.58 + 65.36) / 3, abs=0.5)
    assert (agg.overall.n, agg.overall.of, agg.partial) == (78, 78, False)
    assert agg.overall.describe() == "58.0"


def test_modality_is_the_mean_of_its_datasets_not_of_its_meta_tasks():
    scores = {t.name: 0.0 for t in tasks_of("image")}
    scores.update({t.name: 100.0 for t in tasks_of("image", "Grd")})  # 4 of 36
    agg = aggregate(scores)
    assert agg.meta_tasks["image", "Grd"].value == 100.0
    assert agg.modalities["image"].value == pytest.approx(400 / 36)  # meta-task mean would be 25


def test_partial_run_reports_its_coverage_everywhere():
    scores = {t.name: 50.0 for t in tasks_of("image")}
    scores.update({"K700": 40.0, "HMDB51": 20.0, "ViDoRe_arxivqa": 80.0})
    agg = aggregate(scores)
    assert agg.partial and (agg.overall.n, agg.overall.of) == (39, 78)
    assert agg.overall.describe() == f"{(36 * 50 + 40 + 20 + 80) / 39:.1f} (partial 39/78)"
    assert agg.modalities["video"].describe() == "30.0 (partial 2/18)"
    assert not agg.modalities["image"].partial
    assert agg.meta_tasks["video", "CLS"].n == 2 and agg.meta_tasks["video", "CLS"].of == 5
    assert agg.meta_tasks["video", "QA"].value is None
    assert agg.meta_tasks["video", "QA"].describe() == "n/a (0/5)"


def test_unknown_dataset_is_refused():
    with pytest.raises(KeyError, match="MomentSeeker_1k8"):
        aggregate({"MomentSeeker_1k8": 0.4})


def test_submission_marks_missing_files_and_can_rename_page_tasks(tmp_path):
    score = {"hit@1": 0.5, "num_pred": 2, "num_data": 2}
    meta = {"model_name": "mine", "model_size": 2.0}
    data = submission({"K700": score}, meta, date=datetime.date(2026, 1, 2))
    assert data["metadata"] == {
        "model_name": "mine",
        "model_size": 2.0,
        "report_generated_date": "2026-01-02",
    }
    assert data["metrics"]["video"]["K700"] == score
    assert data["metrics"]["visdoc"]["ViDoSeek-page"] == "FILE_N/A"
    assert [len(data["metrics"][m]) for m in ("image", "video", "visdoc")] == [36, 18, 24]
    fixed = submission({}, meta, fixed_page_names=True)
    assert (
        "ViDoSeek-page-fixed" in fixed["metrics"]["visdoc"]
        and "ViDoSeek-page" not in fixed["metrics"]["visdoc"]
    )
    path = write_submission(tmp_path / "out" / "mine.json", data)
    assert json.loads(path.read_text()) == data


def test_submission_validates_metadata():
    with pytest.raises(ValueError, match="model_name"):
        submission({}, {"url": "x"})
    with pytest.raises(ValueError, match="unknown metadata"):
        submission({}, {"model_name": "m", "colour": "red"})
