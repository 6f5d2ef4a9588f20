"""Reading MMEB-eval folders: errors that name the dataset, row, column or file; skip_missing."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eval_fakes import FakeEncoder
from vlm2vec.config import EvalConfig
from vlm2vec.encoding.items import dedup_examples
from vlm2vec.evaluation import DatasetError, MissingDatasetError, evaluate_model, load_eval_dataset
from vlm2vec.testing.synthetic import write_synthetic_mmeb_eval

KINDS = {"ImageNet-1K": "classification", "MSCOCO_i2t": "retrieval_i2t", "OK-VQA": "vqa"}


@pytest.fixture()
def folder(tmp_path):
    return write_synthetic_mmeb_eval(
        tmp_path / "data", datasets=KINDS, num_queries=5, num_candidates=4, seed=2
    )


def _write(folder, name, columns):
    (folder / name).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), folder / name / "test-00000-of-00001.parquet")


def test_reader_finds_image_root_and_dedups(folder):
    ds = load_eval_dataset(folder, "ImageNet-1K")
    assert ds.image_root == folder / "images" and len(ds.examples) == 5
    dd = dedup_examples(ds.examples)
    assert len(dd.tgt_items) == 4  # the 4 class names, shared by every query
    assert [dd.tgt_items[i].text for i in dd.tgt_index[0]] == list(ds.examples[0].tgt_texts)
    assert len(load_eval_dataset(folder, "ImageNet-1K", max_queries=2).examples) == 2


def test_missing_dataset_error_names_it(folder, tmp_path):
    cfg = EvalConfig(data_dir=str(folder), output_dir=str(tmp_path / "o"), datasets=["OK-VQA", "GQA"])
    with pytest.raises(MissingDatasetError, match="GQA"):
        evaluate_model(FakeEncoder(), cfg)


def test_skip_missing_reports_missing_never_zero(folder, tmp_path):
    cfg = EvalConfig(
        data_dir=str(folder),
        output_dir=str(tmp_path / "o"),
        meta_tasks=["VQA", "Classification"],
        skip_missing=True,
    )
    summary = evaluate_model(FakeEncoder(), cfg)
    assert set(summary["datasets"]) == {"ImageNet-1K", "OK-VQA"}
    assert "GQA" in summary["missing"] and summary["missing"]["GQA"]["meta_task"] == "VQA"
    assert summary["meta_tasks"]["VQA"] == summary["datasets"]["OK-VQA"]["precision@1"]
    assert summary["meta_tasks"]["Retrieval"] is None
    assert summary["num_datasets"]["VQA"] == 1
    assert "GQA" in (tmp_path / "o" / "summary.md").read_text()


def test_missing_image_error_names_dataset_row_and_path(folder):
    (folder / "images" / "ImageNet-1K" / "q_00003.png").unlink()
    with pytest.raises(DatasetError, match=r"'ImageNet-1K', row 4, column 'qry_img_path'.*q_00003\.png"):
        load_eval_dataset(folder, "ImageNet-1K")


def test_wrong_columns_error_names_file_and_column(folder):
    _write(
        folder,
        "Broken",
        {"qry_text": ["a"], "qry_img_path": [""], "tgt_texts": [["b"]], "tgt_img_path": [[""]]},
    )
    with pytest.raises(DatasetError, match=r"'Broken'.*test-00000-of-00001\.parquet.*\['tgt_text'\]"):
        load_eval_dataset(folder, "Broken")


def test_placeholder_without_image_error_names_row_and_column(folder):
    _write(
        folder,
        "Bad",
        {
            "qry_text": ["ok", "<|image_1|> x"],
            "qry_img_path": ["", ""],
            "tgt_text": [["b"], ["c"]],
            "tgt_img_path": [[""], [""]],
        },
    )
    with pytest.raises(DatasetError, match=r"'Bad', row 2, column 'qry_text'"):
        load_eval_dataset(folder, "Bad")


def test_unequal_candidate_lists_error(folder):
    _write(
        folder,
        "Uneven",
        {"qry_text": ["a"], "qry_img_path": [""], "tgt_text": [["b", "c"]], "tgt_img_path": [[""]]},
    )
    with pytest.raises(DatasetError, match=r"'Uneven', row 1: tgt_text has 2"):
        load_eval_dataset(folder, "Uneven")


def test_misnumbered_placeholder_fails_before_encoding(folder):
    _write(
        folder,
        "Misnumbered",
        {
            "qry_text": ["<|image_2|> x"],
            "qry_img_path": ["a.png"],
            "tgt_text": [["b"]],
            "tgt_img_path": [[""]],
        },
    )
    with pytest.raises(DatasetError, match=r"'Misnumbered', row 1, column 'qry_text'.*<\|image_1\|>"):
        load_eval_dataset(folder, "Misnumbered")
