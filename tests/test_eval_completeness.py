"""No silent partial or stale evaluation: wrong data_dir layouts fail naming the folder to pass,
absent datasets fail or are reported partial, reuse follows content, errors name where they happened."""

import json
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eval_fakes import FakeEncoder
from vlm2vec.config import EvalConfig, ModelConfig
from vlm2vec.encoding.fingerprint import model_fingerprint
from vlm2vec.errors import UserError
from vlm2vec.evaluation import DatasetError, EvalStats, MissingDatasetError, evaluate_model, format_table
from vlm2vec.testing.synthetic import write_synthetic_mmeb_eval

KINDS = {"ImageNet-1K": "classification", "OK-VQA": "vqa", "MSCOCO_i2t": "retrieval_i2t"}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_synthetic_mmeb_eval(
        tmp_path_factory.mktemp("src"), datasets=KINDS, num_queries=4, num_candidates=3, seed=8
    )


@pytest.fixture()
def folder(source, tmp_path):
    return shutil.copytree(source, tmp_path / "MMEB-eval")


def _cfg(data, out, **kw):
    return EvalConfig(**{"data_dir": str(data), "output_dir": str(out), "batch_size": 4, **kw})


# ------------------------------------------------------------------------------ data_dir layouts
def test_empty_or_unrelated_data_dir_is_an_error_naming_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    unrelated = tmp_path / "unrelated"
    (unrelated / "notes").mkdir(parents=True)
    (unrelated / "notes" / "a.txt").write_text("x")
    for data in (empty, unrelated):
        with pytest.raises(DatasetError, match=f"'{data}' holds no dataset folder"):
            evaluate_model(FakeEncoder(), _cfg(data, tmp_path / "out"))
        assert not (tmp_path / "out" / "summary.json").exists()


def test_folder_with_only_non_mmeb_datasets_needs_them_named(source, tmp_path):
    data = tmp_path / "custom"
    shutil.copytree(source / "OK-VQA", data / "MyOwnSet")
    shutil.copytree(source / "images", data / "images")
    with pytest.raises(DatasetError, match=r"holds no MMEB-eval dataset.*eval\.datasets=\[MyOwnSet\]"):
        evaluate_model(FakeEncoder(), _cfg(data, tmp_path / "out"))


def test_data_dir_one_level_too_high_names_the_folder_to_pass(folder, tmp_path):
    with pytest.raises(DatasetError, match=f"above the MMEB-eval folder.*pass eval.data_dir={folder}$"):
        evaluate_model(FakeEncoder(), _cfg(folder.parent, tmp_path / "out"))


def test_hub_cache_folder_names_the_snapshot_to_pass(source, tmp_path):
    repo = tmp_path / "hub" / "datasets--TIGER-Lab--MMEB-eval"
    snapshot = shutil.copytree(source, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    for data in (tmp_path / "hub", repo):
        with pytest.raises(DatasetError, match=f"pass eval.data_dir={snapshot}$"):
            evaluate_model(FakeEncoder(), _cfg(data, tmp_path / "out"))


def test_a_dataset_folder_as_data_dir_names_its_parent(folder, tmp_path):
    with pytest.raises(
        DatasetError, match=f"one dataset \\(OK-VQA\\); pass its parent: eval.data_dir={folder} "
    ):
        evaluate_model(FakeEncoder(), _cfg(folder / "OK-VQA", tmp_path / "out"))


# ------------------------------------------------------------------------------ completeness
def test_default_selection_with_absent_datasets_fails_listing_them(folder, tmp_path):
    with pytest.raises(MissingDatasetError, match=r"33 dataset\(s\) of the default selection") as info:
        evaluate_model(FakeEncoder(), _cfg(folder, tmp_path / "out"))
    assert all(name in str(info.value) for name in ("N24News", "GQA", "RefCOCO", "Visual7W-Pointing"))
    assert "ImageNet-1K" not in str(info.value).split(":", 1)[1]


def test_partial_run_lists_missing_and_marks_every_mean_partial(folder, tmp_path):
    out = tmp_path / "out"
    summary = evaluate_model(FakeEncoder(), _cfg(folder, out, skip_missing=True))
    assert set(summary["datasets"]) == set(KINDS) and len(summary["missing"]) == 33
    assert summary["partial"] is True
    assert summary["coverage"]["overall"] == {"datasets": 3, "of": 36, "partial": True}
    assert summary["coverage"]["Classification"] == {"datasets": 1, "of": 10, "partial": True}
    assert summary["coverage"]["Grounding"] == {"datasets": 0, "of": 4, "partial": True}
    reports = {
        "summary.md": (out / "summary.md").read_text(),
        "table": format_table(summary),
        "summary.csv": (out / "summary.csv").read_text(),
        "datasets.csv": (out / "datasets.csv").read_text(),
    }
    for name, text in reports.items():
        assert "GQA" in text and "RefCOCO" in text, name  # the missing ones, in every report
    for name in ("summary.md", "table"):
        assert "PARTIAL: means over 3 of the 36 MMEB datasets" in reports[name], name
        assert f"{summary['overall']:.1f} (3/36)" in reports[name], name
    assert "[partial]" in reports["table"] and "3/36" in reports["summary.csv"]
    assert json.loads((out / "summary.json").read_text())["partial"] is True


# ------------------------------------------------------------------------------ content-keyed reuse
def _rewrite_uncompressed(file, edit=None):
    table = pq.read_table(file).to_pydict()
    if edit is not None:
        edit(table)
    pq.write_table(pa.table(table, schema=pq.read_schema(file)), file, compression="NONE")


def _swap_first_two_candidates(table):
    for col in ("tgt_text", "tgt_img_path"):
        row = table[col][0]
        row[0], row[1] = row[1], row[0]


def test_same_size_parquet_edit_is_rescored(folder, tmp_path):
    file = folder / "OK-VQA" / "test-00000-of-00001.parquet"
    _rewrite_uncompressed(file)
    cfg = _cfg(folder, tmp_path / "out", datasets=list(KINDS))
    evaluate_model(FakeEncoder(), cfg)
    before = (tmp_path / "out" / "predictions" / "OK-VQA.jsonl").read_text()
    stat = file.stat()
    _rewrite_uncompressed(file, _swap_first_two_candidates)  # the positive of row 0 changes
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (file.stat().st_size, file.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)

    stats, model = EvalStats(), FakeEncoder()
    evaluate_model(model, cfg, stats=stats)
    assert stats.datasets_evaluated == ["OK-VQA"] and stats.datasets_reused == ["ImageNet-1K", "MSCOCO_i2t"]
    assert model.calls == 0  # the same items: re-scored from the cache
    after = (tmp_path / "out" / "predictions" / "OK-VQA.jsonl").read_text()
    assert after != before


def test_replaced_image_is_encoded_again(folder, tmp_path):
    cfg = _cfg(folder, tmp_path / "out", datasets=list(KINDS))
    evaluate_model(FakeEncoder(), cfg)
    image = folder / "images" / "ImageNet-1K" / "q_00001.png"
    from PIL import Image

    Image.new("RGB", (20, 20), (250, 0, 0)).save(image)  # same path, new content (size and mtime)
    stats, model = EvalStats(), FakeEncoder()
    evaluate_model(model, cfg, stats=stats)
    assert stats.datasets_evaluated == ["ImageNet-1K"]
    # only the batch holding that query item (batches are re-encoded whole); the rest from the cache
    assert 1 <= model.rows_encoded <= cfg.batch_size


def test_fingerprint_holds_what_changes_embeddings_only():
    model = FakeEncoder()
    model.cfg = ModelConfig(temperature=0.02, lora_r=8, gradient_checkpointing=False, max_length=64)
    base = model_fingerprint(model)
    model.cfg = ModelConfig(temperature=0.05, lora_r=16, gradient_checkpointing=True, max_length=64)
    assert model_fingerprint(model) == base  # training-only keys
    model.cfg = ModelConfig(path="/elsewhere", max_length=64)
    assert model_fingerprint(model) == base  # location
    changes = [dict(max_length=32), dict(max_length=None), dict(num_crops=16), dict(normalize=False)]
    changes += [dict(max_pixels=1000), dict(prompt_format="native"), dict(system_instruction="Find it")]
    changes += [dict(image_resolution="low"), dict(backbone="qwen3_vl")]
    for changed in changes:
        model.cfg = ModelConfig(**{"max_length": 64, **changed})
        assert model_fingerprint(model) != base, changed


# ------------------------------------------------------------------------------ tie rule end to end
def test_duplicate_positive_is_a_hit_under_reference_and_a_miss_under_strict(tmp_path):
    data = tmp_path / "data"
    (data / "DupSet").mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "qry_text": ["a red circle", "a blue square"],
                "qry_img_path": ["", ""],
                "tgt_text": [
                    ["a red circle", "a green star", "a red circle"],
                    ["a blue square", "a blue square", "a yellow moon"],
                ],
                "tgt_img_path": [["", "", ""], ["", "", ""]],
            }
        ),
        data / "DupSet" / "test-00000-of-00001.parquet",
    )
    out = tmp_path / "out"
    ref = evaluate_model(FakeEncoder(), _cfg(data, out, datasets=["DupSet"]))
    model = FakeEncoder()
    strict = evaluate_model(model, _cfg(data, out, datasets=["DupSet"], ties="strict"))
    assert ref["datasets"]["DupSet"]["precision@1"] == 100.0 and ref["ties"] == "reference"
    assert strict["datasets"]["DupSet"]["precision@1"] == 0.0 and strict["ties"] == "strict"
    assert strict["datasets"]["DupSet"]["mrr"] == 50.0
    assert model.calls == 0  # the rule changed: re-scored from the cache
    assert "Tie rule: `strict`" in (out / "summary.md").read_text()
    assert json.loads((out / "summary.json").read_text())["ties"] == "strict"
    with pytest.raises(UserError, match="eval.ties"):
        evaluate_model(FakeEncoder(), _cfg(data, out, datasets=["DupSet"], ties="optimistic"))


# ------------------------------------------------------------------------------ errors with context
def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("num_workers", [0, 1])
def test_truncated_image_error_names_dataset_row_column_and_path(folder, tmp_path, num_workers):
    image = folder / "images" / "MSCOCO_i2t" / "q_00002.png"
    _truncate(image)
    cfg = _cfg(folder, tmp_path / "out", datasets=["MSCOCO_i2t"], num_workers=num_workers)
    with pytest.raises(DatasetError) as info:
        evaluate_model(FakeEncoder(), cfg)
    msg = str(info.value)
    assert msg.startswith("dataset 'MSCOCO_i2t', row 3, column 'qry_img_path': cannot read image ")
    assert str(image) in msg and "\n" not in msg


def test_corrupt_parquet_error_names_the_file(folder, tmp_path):
    file = folder / "OK-VQA" / "test-00000-of-00001.parquet"
    file.write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(DatasetError, match=f"dataset 'OK-VQA': cannot read parquet file '{file}'"):
        evaluate_model(FakeEncoder(), _cfg(folder, tmp_path / "out", datasets=["OK-VQA"]))


def test_non_string_cell_fails_before_encoding(tmp_path):
    data = tmp_path / "data"
    (data / "Typed").mkdir(parents=True)
    pq.write_table(
        pa.table(
            {"qry_text": ["a"], "qry_img_path": [""], "tgt_text": [["b", "c"]], "tgt_img_path": [["", ""]]}
        ),
        data / "Typed" / "test-00000-of-00001.parquet",
    )
    table = pq.read_table(data / "Typed" / "test-00000-of-00001.parquet").to_pydict()
    table["qry_text"] = [7]
    pq.write_table(pa.table(table), data / "Typed" / "test-00000-of-00001.parquet")
    model = FakeEncoder()
    with pytest.raises(DatasetError, match=r"'Typed', row 1, column 'qry_text': expected a string, got int"):
        evaluate_model(model, _cfg(data, tmp_path / "out", datasets=["Typed"]))
    assert model.calls == 0


def test_fingerprint_holds_the_adapter_settings_in_a_fixed_order():
    class Conf:
        def __init__(self, r, targets):
            self.r, self.target_modules, self.base_model_name_or_path = r, targets, "/somewhere"

    model = FakeEncoder()
    model.peft_config = {"default": Conf(8, {"q_proj", "v_proj", "o_proj"})}
    base = model_fingerprint(model)
    model.peft_config = {"default": Conf(8, {"o_proj", "v_proj", "q_proj"})}
    model.peft_config["default"].base_model_name_or_path = "/elsewhere"
    assert model_fingerprint(model) == base
    from vlm2vec.encoding.fingerprint import _adapter_part

    assert _adapter_part(model)["default"]["target_modules"] == ["o_proj", "q_proj", "v_proj"]
    model.peft_config = {"default": Conf(16, {"q_proj", "v_proj", "o_proj"})}  # r sets the LoRA scale
    assert model_fingerprint(model) != base
