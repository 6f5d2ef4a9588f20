"""The evaluation runner with a deterministic fake encoder: dedup, cache, resume, aggregates, reports."""

import csv
import json

import pyarrow.parquet as pq
import pytest

from eval_fakes import FakeEncoder
from vlm2vec.config import EvalConfig
from vlm2vec.evaluation import EvalStats, evaluate_model, format_table
from vlm2vec.evaluation.registry import MMEB_DATASETS, PUBLISHED_RESULTS
from vlm2vec.testing.synthetic import MMEB_EVAL_KINDS, write_synthetic_mmeb_eval

SMALL = {
    "ImageNet-1K": "classification",
    "OK-VQA": "vqa",
    "MSCOCO_t2i": "retrieval_t2i",
    "MyOwnSet": "grounding",
}


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    return write_synthetic_mmeb_eval(
        tmp_path_factory.mktemp("small"), datasets=SMALL, num_queries=7, num_candidates=5, seed=3
    )


@pytest.fixture(scope="module")
def all36_folder(tmp_path_factory):
    kinds = {**MMEB_EVAL_KINDS, "MyOwnSet": "retrieval_i2t"}
    return write_synthetic_mmeb_eval(
        tmp_path_factory.mktemp("all36"), datasets=kinds, num_queries=4, num_candidates=4, seed=5
    )


def _cfg(folder, out, **kw):
    base = dict(data_dir=str(folder), output_dir=str(out), batch_size=3, datasets=list(SMALL))
    return EvalConfig(**{**base, **kw})


def _distinct_items(folder, names):
    """Hand count of distinct query items plus distinct candidate items, per dataset."""
    total = 0
    for name in names:
        t = pq.read_table(folder / name / "test-00000-of-00001.parquet").to_pydict()
        total += len(set(zip(t["qry_text"], t["qry_img_path"])))
        total += len(
            {pair for texts, imgs in zip(t["tgt_text"], t["tgt_img_path"]) for pair in zip(texts, imgs)}
        )
    return total


def _predictions(out, names):
    return {n: (out / "predictions" / f"{n}.jsonl").read_text() for n in names}


def _results(summary):
    return {k: v for k, v in summary.items() if k != "config"}


def test_encoded_items_equal_distinct_items_and_cache_makes_rerun_encode_nothing(small_folder, tmp_path):
    model = FakeEncoder()
    stats = EvalStats()
    first = evaluate_model(model, _cfg(small_folder, tmp_path / "a"), stats=stats)
    distinct = _distinct_items(small_folder, SMALL)
    assert model.rows_encoded == distinct == stats.items_encoded
    assert stats.naive_slots == len(SMALL) * (7 + 7 * 5) > distinct

    # same output folder: every dataset is reused, nothing encoded
    again = FakeEncoder()
    stats2 = EvalStats()
    assert _results(evaluate_model(again, _cfg(small_folder, tmp_path / "a"), stats=stats2)) == _results(
        first
    )
    assert again.calls == 0 and stats2.datasets_reused == list(SMALL)

    # fresh output folder sharing the cache: datasets are scored again, but no item is re-encoded
    third = FakeEncoder()
    cfg = _cfg(small_folder, tmp_path / "b", cache_dir=str(tmp_path / "a" / "cache"))
    assert _results(evaluate_model(third, cfg)) == _results(first)
    assert third.calls == 0
    assert _predictions(tmp_path / "b", SMALL) == _predictions(tmp_path / "a", SMALL)


def test_changed_model_does_not_reuse_results_or_cache(small_folder, tmp_path):
    evaluate_model(FakeEncoder(seed=0), _cfg(small_folder, tmp_path))
    other = FakeEncoder(seed=1)
    evaluate_model(other, _cfg(small_folder, tmp_path), overwrite=True)  # another model's folder: asked for
    assert other.rows_encoded == _distinct_items(small_folder, SMALL)


@pytest.mark.parametrize("fail_after", [2, 7, 13])
def test_interrupted_evaluation_resumes_to_identical_results(small_folder, tmp_path, fail_after):
    reference = evaluate_model(FakeEncoder(), _cfg(small_folder, tmp_path / "ref"))
    cfg = _cfg(small_folder, tmp_path / "run", cache_chunk_items=3)  # one batch per cache chunk
    crashing = FakeEncoder(fail_after_calls=fail_after)
    with pytest.raises(RuntimeError, match="injected"):
        evaluate_model(crashing, cfg)
    resumed_model = FakeEncoder()
    resumed = evaluate_model(resumed_model, cfg)
    assert _results(resumed) == _results(reference)
    assert _predictions(tmp_path / "run", SMALL) == _predictions(tmp_path / "ref", SMALL)
    # the finished batches were not encoded again
    assert resumed_model.rows_encoded + crashing.rows_encoded == _distinct_items(small_folder, SMALL)


def test_all_36_datasets_summary_is_dataset_weighted(all36_folder, tmp_path):
    cfg = EvalConfig(data_dir=str(all36_folder), output_dir=str(tmp_path), batch_size=8)
    summary = evaluate_model(FakeEncoder(), cfg)
    rows = summary["datasets"]
    assert set(rows) == set(MMEB_DATASETS) | {"MyOwnSet"}
    assert rows["MyOwnSet"]["meta_task"] == "other" and rows["MyOwnSet"]["split"] is None
    for name, info in MMEB_DATASETS.items():
        assert (rows[name]["meta_task"], rows[name]["split"], rows[name]["num_queries"]) == (
            info.meta_task,
            info.split,
            4,
        )

    def hand_mean(names):
        return sum(rows[n]["precision@1"] for n in names) / len(names)

    for task in ("Classification", "VQA", "Retrieval", "Grounding"):
        members = [n for n, i in MMEB_DATASETS.items() if i.meta_task == task]
        assert summary["meta_tasks"][task] == pytest.approx(hand_mean(members))
    for split in ("IND", "OOD"):
        assert summary[split] == pytest.approx(
            hand_mean([n for n, i in MMEB_DATASETS.items() if i.split == split])
        )
    assert summary["overall"] == pytest.approx(hand_mean(list(MMEB_DATASETS)))  # MyOwnSet excluded
    assert summary["partial"] is False and not summary["missing"]  # all 36: a complete run
    assert summary["num_datasets"] == {
        "Classification": 10,
        "VQA": 10,
        "Retrieval": 12,
        "Grounding": 4,
        "IND": 20,
        "OOD": 16,
        "overall": 36,
    }

    # reports
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    md = (tmp_path / "summary.md").read_text()
    assert all(name in md for name in PUBLISHED_RESULTS) and "**ours" in md and "PARTIAL" not in md
    table = list(csv.DictReader((tmp_path / "summary.csv").read_text().splitlines()))
    assert [r["source"] for r in table] == ["published"] * len(PUBLISHED_RESULTS) + ["ours"]
    assert float(table[-1]["overall"]) == pytest.approx(summary["overall"], abs=0.005)
    assert (tmp_path / "meta_tasks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((tmp_path / "predictions" / "OK-VQA.jsonl").read_text().splitlines()) == 4
    text = format_table(summary)
    assert all(name in text for name in rows) and "Overall" in text


def test_failure_after_a_finished_dataset_resumes_without_redoing_it(small_folder, tmp_path, monkeypatch):
    import vlm2vec.evaluation.runner as runner

    reference = evaluate_model(FakeEncoder(), _cfg(small_folder, tmp_path / "ref"))
    real_score, calls = runner.score_queries, []

    def failing_score(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # dataset 1 is finished and written; dataset 2 is encoded, then fails
            raise RuntimeError("injected after dataset 1")
        return real_score(*args, **kwargs)

    monkeypatch.setattr(runner, "score_queries", failing_score)
    with pytest.raises(RuntimeError, match="injected"):
        evaluate_model(FakeEncoder(), _cfg(small_folder, tmp_path / "run"))
    monkeypatch.setattr(runner, "score_queries", real_score)
    assert sorted(p.name for p in (tmp_path / "run" / "datasets").iterdir()) == ["ImageNet-1K.json"]
    stats, resumed_model = EvalStats(), FakeEncoder()
    assert _results(
        evaluate_model(resumed_model, _cfg(small_folder, tmp_path / "run"), stats=stats)
    ) == _results(reference)
    assert stats.datasets_reused == ["ImageNet-1K"]
    # dataset 2 was fully encoded before the failure: only datasets 3 and 4 are encoded now
    assert resumed_model.rows_encoded == _distinct_items(small_folder, list(SMALL)[2:])


def test_changed_top_k_rewrites_predictions_from_the_cache(small_folder, tmp_path):
    evaluate_model(FakeEncoder(), _cfg(small_folder, tmp_path, top_k_predictions=2))
    again = FakeEncoder()
    evaluate_model(again, _cfg(small_folder, tmp_path, top_k_predictions=3))
    assert again.calls == 0  # re-scored from the cache, nothing encoded
    first = json.loads(_predictions(tmp_path, ["OK-VQA"])["OK-VQA"].splitlines()[0])
    assert len(first["top"]) == 3
