"""The MMEB-V2 runner on the synthetic slice with the deterministic fake encoder: pools, whole-corpus
ranking, reference score files, the 78-task report, resume after a crash, data versions in the keys."""

import csv
import io
import json
import shutil

import pytest

from eval_fakes import FakeEncoder
from vlm2vec.config import EvalConfig, load_config
from vlm2vec.errors import DataError
from vlm2vec.evaluation import EvalStats, MissingDatasetError, evaluate_model
from vlm2vec.evaluation.v2_data import locate_v2
from vlm2vec.evaluation.v2_items import task_items
from vlm2vec.evaluation.v2_reports import build_v2_summary, format_v2_csv, format_v2_markdown
from vlm2vec.evaluation.v2_runner import cache_name
from vlm2vec.mmeb_v2.locate import read_task
from vlm2vec.mmeb_v2.metrics import SCORE_FAMILIES
from vlm2vec.mmeb_v2.tasks import TASKS
from vlm2vec.testing.synthetic_v2 import VIDEO_TASKS, VISDOC_TASKS, write_synthetic_v2

SLICE = (*VIDEO_TASKS, *VISDOC_TASKS)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_synthetic_v2(tmp_path_factory.mktemp("v2"))


def _cfg(root, out, **kw):
    base = dict(benchmark="mmeb_v2", v2_root=str(root), output_dir=str(out), skip_missing=True, batch_size=3)
    return EvalConfig(**{**base, **kw})


def _read(root, name, **kw):
    found = locate_v2(_cfg(root, "unused", v2_tasks=[name], **kw))[0]
    return read_task(found)


def _results(summary):
    return {k: v for k, v in summary.items() if k != "config"}


def _predictions(out, name):
    return [json.loads(x) for x in (out / "predictions" / f"{name}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def run(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    model, stats = FakeEncoder(), EvalStats()
    summary = evaluate_model(model, _cfg(root, out), stats=stats)
    return out, summary, model, stats


def test_every_task_of_the_slice_is_scored_and_the_report_is_partial_15_of_78(run):
    out, summary, _, _ = run
    assert list(summary["datasets"]) == [n for n in TASKS if n in SLICE]
    assert summary["partial"] and summary["coverage"] == "15/78" and len(summary["missing"]) == 63
    assert summary["modalities"]["video"]["n"] == 11 and summary["modalities"]["visdoc"]["of"] == 24
    assert "PARTIAL MMEB-V2 run: 15/78" in (out / "summary.md").read_text()
    assert json.loads((out / "summary.json").read_text())["coverage"] == "15/78"
    rows = list(csv.reader((out / "summary.csv").open()))
    assert rows[1][1] == "15/78" and "(15/78)" in rows[1][2]
    assert [p["model"] for p in summary["published"]][-1] == "Qwen3-VL-Embedding-8B"
    status = {r["dataset"]: r["status"] for r in csv.DictReader((out / "datasets.csv").open())}
    assert len(status) == 78 and sum(v == "scored" for v in status.values()) == 15


def test_score_files_use_the_reference_key_names_and_submission_marks_missing(run):
    out, summary, _, _ = run
    score = json.loads((out / "scores" / "visdoc" / "ViDoRe_arxivqa_score.json").read_text())
    keys = [f"{f}@{k}" for f in SCORE_FAMILIES for k in (1, 5, 10)] + ["num_pred", "num_data"]
    assert list(score) == keys
    assert summary["datasets"]["ViDoRe_arxivqa"]["score"] == pytest.approx(score["ndcg_linear@5"] * 100)
    sub = json.loads((out / "submission.json").read_text())
    assert sub["metrics"]["video"]["K700"]["hit@1"] == score_of(out, "video", "K700")["hit@1"]
    assert sub["metrics"]["video"]["HMDB51"] == "FILE_N/A" and sub["metadata"]["model_name"] == "FakeEncoder"


def score_of(out, modality, name):
    return json.loads((out / "scores" / modality / f"{name}_score.json").read_text())


def test_each_distinct_item_is_encoded_once_and_a_rerun_encodes_nothing(root, run):
    out, summary, model, stats = run
    assert model.rows_encoded == stats.items_encoded == stats.distinct_items
    assert stats.naive_slots > stats.distinct_items
    again, stats2 = FakeEncoder(), EvalStats()
    assert _results(evaluate_model(again, _cfg(root, out), stats=stats2)) == _results(summary)
    assert again.calls == 0 and sorted(stats2.datasets_reused) == sorted(SLICE)


def test_local_pools_rank_the_rows_own_list_and_global_pools_every_candidate(root, run):
    out = run[0]
    ssv2 = _read(root, "SmthSmthV2")
    for q, pred in zip(ssv2.queries, _predictions(out, "SmthSmthV2")):
        assert set(pred["prediction"]) == set(q.candidates)
    k700 = _read(root, "K700")
    assert all(len(q.candidates) == 0 for q in k700.queries)
    for pred in _predictions(out, "K700"):
        assert set(pred["prediction"]) == set(k700.candidates)


def test_documents_rank_the_whole_page_corpus_encoded_once(root, run):
    out = run[0]
    data = _read(root, "ViDoRe_arxivqa")
    items = task_items(data, 8)
    assert len(items.tgt_items) == len(data.candidates) == 6  # the corpus, not the judged pages
    assert all(it.text.startswith("<|image_1|> Understand the content") for it in items.tgt_items)
    for pred in _predictions(out, "ViDoRe_arxivqa"):
        assert set(pred["prediction"]) == set(data.candidates)


def test_video_items_carry_the_sampled_frames_and_the_video_placeholder(root):
    data = _read(root, "K700")
    items = task_items(data, 8)
    first = items.qry_items[0]
    assert first.text == "<|video_1|> Recognize the category of the video content."
    assert 0 < len(first.video) <= 8 and all(f.endswith(".jpg") for f in first.video)
    assert all(f in items.stamps for f in first.video)
    fewer = task_items(data, 2).qry_items[0].video
    assert len(fewer) == 2 and fewer[0] == first.video[0] and fewer[-1] == first.video[-1]


def test_cache_folder_and_result_settings_hold_the_data_version(root, tmp_path):
    data = _read(root, "ViDoSeek-page")
    assert "page-fixed" in data.data_version and "page-fixed" in cache_name(data)
    other = _read(root, "ViDoSeek-page")
    other.data_version = data.data_version.replace("page-fixed", "page-old")
    assert cache_name(other) != cache_name(data)
    out = tmp_path / "out"
    evaluate_model(FakeEncoder(), _cfg(root, out, v2_tasks=["ViDoSeek-page"]))
    record = json.loads((out / "datasets" / "ViDoSeek-page.json").read_text())
    assert record["settings"]["data_version"] == data.data_version
    assert any(p.name == "ViDoSeek-page" for p in (out / "cache").rglob("ViDoSeek-page"))
    assert list((out / "cache").rglob(cache_name(data).split("/")[-1]))


@pytest.mark.parametrize("fail_after", [1, 5, 12])
def test_a_crash_resumes_to_identical_results_without_redoing_finished_batches(root, tmp_path, fail_after):
    tasks = ["K700", "SmthSmthV2", "ViDoRe_arxivqa", "ViDoSeek-doc"]
    ref_stats = EvalStats()
    reference = evaluate_model(FakeEncoder(), _cfg(root, tmp_path / "ref", v2_tasks=tasks), stats=ref_stats)
    cfg = _cfg(root, tmp_path / "run", v2_tasks=tasks, cache_chunk_items=3)  # one batch per chunk
    crashing = FakeEncoder(fail_after_calls=fail_after)
    with pytest.raises(RuntimeError, match="injected"):
        evaluate_model(crashing, cfg)
    resumed_model = FakeEncoder()
    resumed = evaluate_model(resumed_model, cfg)
    assert _results(resumed) == _results(reference)
    # the finished batches (and tasks) were not encoded again
    assert resumed_model.rows_encoded + crashing.rows_encoded == ref_stats.distinct_items
    for name in tasks:
        assert _predictions(tmp_path / "run", name) == _predictions(tmp_path / "ref", name)


def test_a_missing_frame_folder_names_task_row_video_and_path(root, tmp_path):
    copy = tmp_path / "v2"
    shutil.copytree(root, copy)
    data = _read(copy, "K700")
    victim = data.queries[1].video
    shutil.rmtree(victim)
    with pytest.raises(DataError) as err:
        evaluate_model(FakeEncoder(), _cfg(copy, tmp_path / "out", v2_tasks=["K700"]))
    msg = str(err.value)
    assert "'K700'" in msg and "row 2" in msg and data.queries[1].video_id in msg and str(victim) in msg


def test_missing_tasks_fail_the_run_unless_a_partial_run_is_asked_for(root, tmp_path):
    with pytest.raises(MissingDatasetError, match=r"not ready: HMDB51: annotations not found.*vlm2vec data"):
        evaluate_model(FakeEncoder(), _cfg(root, tmp_path, v2_tasks=["K700", "HMDB51"], skip_missing=False))


def _records(names, score):
    return {
        n: {"modality": TASKS[n].modality, "meta_task": TASKS[n].meta_task, "metric": TASKS[n].metric,
            "score": score(i), "ndcg_rule": "reference", "other_rule_score": None, "num_queries": 1,
            "data_version": "v"}
        for i, n in enumerate(names)
    }  # fmt: skip


def test_the_78_way_aggregation_weighs_datasets_not_modalities():
    names = list(TASKS)
    records = _records(names, lambda i: float(i))
    summary = build_v2_summary(records, {}, EvalConfig(benchmark="mmeb_v2"))
    assert not summary["partial"] and summary["coverage"] == "78/78"
    assert summary["overall"]["value"] == pytest.approx(sum(range(78)) / 78)
    assert summary["modalities"]["image"]["value"] == pytest.approx(sum(range(36)) / 36)
    assert summary["modalities"]["video"]["value"] == pytest.approx(sum(range(36, 54)) / 18)
    assert summary["modalities"]["visdoc"]["value"] == pytest.approx(sum(range(54, 78)) / 24)
    mean_of_modalities = sum(summary["modalities"][m]["value"] for m in ("image", "video", "visdoc")) / 3
    assert summary["overall"]["value"] != pytest.approx(mean_of_modalities)
    cls = [i for i, n in enumerate(names) if TASKS[n].modality == "video" and TASKS[n].meta_task == "CLS"]
    assert summary["meta_tasks"]["video/CLS"]["value"] == pytest.approx(sum(cls) / len(cls))
    assert "PARTIAL" not in format_v2_markdown(summary)

    partial = build_v2_summary(_records(names[1:], lambda i: 50.0), {names[0]: {"reason": "x"}}, EvalConfig())
    assert partial["partial"] and partial["coverage"] == "77/78"
    assert partial["modalities"]["image"] == {"value": 50.0, "n": 35, "of": 36, "partial": True}
    assert "77/78" in format_v2_markdown(partial) and "50.0 (77/78)" in format_v2_csv(partial)


def test_v1_runs_keep_their_summary_config_keys(tmp_path):
    from vlm2vec.evaluation.runner import v1_settings

    keys = list(v1_settings(EvalConfig()))
    assert keys[-1] == "dim" and "benchmark" not in keys and "num_frames" not in keys


@pytest.mark.slow
def test_two_processes_give_the_single_process_v2_results(root, tmp_path):
    from pathlib import Path

    from launching import launch

    worker = Path(__file__).parent / "dist_scripts" / "v2_eval_worker.py"
    for nproc, name in ((1, "one"), (2, "two")):
        fresh = shutil.copytree(root, tmp_path / f"data-{name}")  # pages not yet written from corpora
        launch(worker, "--root", str(fresh), "--out", str(tmp_path / name), nproc=nproc, timeout=300)
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    for key in ("config", "missing"):  # both name their own folders
        assert key in ("config",) or list(one[key]) == list(two[key])
        one.pop(key), two.pop(key)
    assert one == two and one["coverage"] == "15/78"
    for name in SLICE:  # moment clips are named by their folder, which holds the data copy's name
        one_text = (tmp_path / "one" / "predictions" / f"{name}.jsonl").read_text()
        two_text = (tmp_path / "two" / "predictions" / f"{name}.jsonl").read_text()
        assert one_text.replace("data-one", "data-two") == two_text
    rank0, rank1 = (json.loads((tmp_path / "two" / f"rank{i}.json").read_text()) for i in (0, 1))
    assert rank0["summary"]["overall"] == rank1["summary"]["overall"]
    total = sum(r["distinct_items"] for r in one["datasets"].values())
    assert 0 < rank0["rows_encoded"] < total and rank0["rows_encoded"] + rank1["rows_encoded"] == total


def test_a_dataset_scored_differently_under_the_two_ndcg_rules_shows_both():
    from vlm2vec.evaluation.v2_reports import format_v2_datasets_csv, format_v2_table

    records = _records(["ViDoSeek-doc", "K700"], lambda i: 40.0 + i)
    records["ViDoSeek-doc"]["other_rule_score"] = 47.5
    summary = build_v2_summary(records, {}, EvalConfig(benchmark="mmeb_v2"))
    assert summary["rules_differ"] == {"ViDoSeek-doc": {"reference": 40.0, "correct": 47.5}}
    table = format_v2_table(summary)
    assert "reference's rule" in table and "[reference rule 40.0, correct rule 47.5]" in table
    assert "47.5 (correct)" in format_v2_markdown(summary)
    row = next(
        r
        for r in csv.DictReader(io.StringIO(format_v2_datasets_csv(summary)))
        if r["dataset"] == "ViDoSeek-doc"
    )
    assert row["ndcg_rule"] == "reference" and row["other_rule_score"] == "47.5"
    correct = build_v2_summary(records, {}, EvalConfig(benchmark="mmeb_v2", ndcg_rule="correct"))
    assert "under the correct rule" in format_v2_table(correct)


def test_image_score_files_are_rebuilt_from_the_v1_ranks():
    from vlm2vec.evaluation.v2_reports import image_score_dict

    scores = image_score_dict([1, 3, 1, 12])
    assert scores["hit@1"] == scores["precision@1"] == scores["map@1"] == 0.5
    assert scores["hit@5"] == 0.75 and scores["hit@10"] == 0.75
    assert scores["mrr@5"] == pytest.approx((1 + 1 / 3 + 1) / 4)
    assert scores["precision@5"] == pytest.approx(3 / 5 / 4)
    assert scores["num_pred"] == scores["num_data"] == 4


def test_older_page_data_is_refused_even_in_a_partial_run_unless_allowed(root, tmp_path):
    from vlm2vec.mmeb_v2.versions import DataVersionError

    copy = tmp_path / "v2"
    shutil.copytree(root, copy)
    (copy / "visdoc-tasks" / "ViDoSeek-page-fixed").rename(copy / "visdoc-tasks" / "ViDoSeek-page")
    with pytest.raises(DataVersionError, match="'ViDoSeek-page'.*before the 2025-11-03 page fix"):
        evaluate_model(FakeEncoder(), _cfg(copy, tmp_path / "out", v2_tasks=["ViDoSeek-page", "K700"]))
    cfg = _cfg(copy, tmp_path / "old", v2_tasks=["ViDoSeek-page"], allow_old_data=True)
    summary = evaluate_model(FakeEncoder(), cfg)
    assert summary["datasets"]["ViDoSeek-page"]["data_version"].endswith("#page-old")
    assert {p["data"] for p in summary["published"]} == {"paper"}


def test_a_class_list_file_sets_the_candidates_of_a_classification_task(root, tmp_path):
    labels = [c for c in _read(root, "K700").candidates]
    listing = tmp_path / "k700.txt"
    listing.write_text("\n".join([*labels, "an extra class", "another one"]) + "\n")
    cfg = _cfg(root, tmp_path / "out", v2_tasks=["K700"], v2_class_lists={"K700": str(listing)})
    evaluate_model(FakeEncoder(), cfg)
    for pred in _predictions(tmp_path / "out", "K700"):
        assert len(pred["prediction"]) == len(labels) + 2
    record = json.loads((tmp_path / "out" / "datasets" / "K700.json").read_text())["metrics"]
    assert not any("class labels taken from the rows" in k for k in record["counts"])
    with pytest.raises(Exception, match="eval.v2_class_lists: .*not video classification"):
        load_config(None, ["--eval.benchmark=mmeb_v2", "--eval.v2_class_lists={MSR-VTT: x.txt}"])
