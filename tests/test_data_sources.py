"""Readers: MMEB-train clone (subsets, split, cap, image root) and custom pair files (JSONL/CSV/parquet)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlm2vec.config import DataConfig, PairSourceConfig
from vlm2vec.data import BadRowError, build_sources, read_mmeb_train, read_pairs
from vlm2vec.testing.synthetic import write_synthetic_mmeb_train

SUBSETS = {"ImageNet_1K": "classification", "MSCOCO_t2i": "retrieval_t2i"}


@pytest.fixture(scope="module")
def mmeb_root(tmp_path_factory) -> Path:
    return write_synthetic_mmeb_train(tmp_path_factory.mktemp("mmeb"), subsets=SUBSETS, rows_per_subset=12)


def test_mmeb_reader_reads_all_subsets_with_paths_joined_onto_the_root(mmeb_root):
    sources = read_mmeb_train(mmeb_root)
    assert [s.name for s in sources] == sorted(SUBSETS)
    assert [len(s) for s in sources] == [12, 12]
    rec = sources[0].record(0)  # ImageNet_1K: image query, text target, a hard negative
    assert rec.source == "ImageNet_1K" and rec.row == 0
    assert rec.qry.images and Path(rec.qry.images[0]).is_file()
    assert Path(rec.qry.images[0]).is_relative_to(mmeb_root)
    assert rec.pos.text and not rec.pos.images
    assert len(rec.negs) == 1


def test_mmeb_reader_subset_choice_split_cap_and_weights(mmeb_root):
    orig = read_mmeb_train(
        mmeb_root, subsets=["MSCOCO_t2i"], max_rows_per_subset=5, weights={"MSCOCO_t2i": 0.5}
    )
    assert [s.name for s in orig] == ["MSCOCO_t2i"] and len(orig[0]) == 5 and orig[0].weight == 0.5
    diverse = read_mmeb_train(mmeb_root, subsets=["MSCOCO_t2i"], split="diverse_instruction")
    assert orig[0].record(0).qry.text != diverse[0].record(0).qry.text  # other instruction wording
    assert orig[0].record(0).pos.images == diverse[0].record(0).pos.images  # same content


def test_mmeb_reader_unknown_subset_names_the_available_ones(mmeb_root):
    with pytest.raises(FileNotFoundError, match="NoSuchSubset.*available.*ImageNet_1K"):
        read_mmeb_train(mmeb_root, subsets=["NoSuchSubset"])
    with pytest.raises(ValueError, match="split"):
        read_mmeb_train(mmeb_root, split="test")


def test_mmeb_reader_custom_image_root_is_used(mmeb_root, tmp_path):
    src = read_mmeb_train(mmeb_root, subsets=["ImageNet_1K"], image_root=str(tmp_path))[0]
    assert src.record(0).qry.images[0].startswith(str(tmp_path))


def _write_pairs(folder: Path, fmt: str) -> Path:
    rows = [
        {
            "q": "a red circle",
            "img": "",
            "t": "caption one",
            "timg": "pics/a.png",
            "n": ["bad one", "bad two"],
        },
        {"q": "<|image_1|> what is it", "img": "pics/b.png", "t": "a square", "timg": "", "n": ["x", "y"]},
    ]
    if fmt == "jsonl":
        path = folder / "pairs.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    elif fmt == "csv":
        path = folder / "pairs.csv"
        lines = ["q,img,t,timg,n"] + [f'"{r["q"]}",{r["img"]},{r["t"]},{r["timg"]},{r["n"][0]}' for r in rows]
        path.write_text("\n".join(lines) + "\n")
    else:
        path = folder / "pairs.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_pairs_file_column_mapping_negatives_and_relative_images(tmp_path, fmt):
    path = _write_pairs(tmp_path, fmt)
    cfg = PairSourceConfig(
        name="mine",
        path=str(path),
        qry_text="q",
        qry_image="img",
        pos_text="t",
        pos_image="timg",
        neg_text="n",
    )
    src = read_pairs(cfg)
    assert len(src) == 2
    r0, r1 = src.record(0), src.record(1)
    assert r0.qry.text == "a red circle" and r0.qry.images == ()
    # image target without placeholder gets one; path joined onto the file's folder (default root)
    assert r0.pos.text == "<|image_1|>\ncaption one" and r0.pos.images == (str(tmp_path / "pics/a.png"),)
    assert r1.qry.text == "<|image_1|> what is it"  # already has its placeholder: unchanged
    assert [n.text for n in r0.negs] == (["bad one", "bad two"] if fmt != "csv" else ["bad one"])


def test_pairs_missing_column_and_bad_json_are_named(tmp_path):
    path = _write_pairs(tmp_path, "jsonl")
    with pytest.raises(ValueError, match="missing column.*'question'"):
        read_pairs(PairSourceConfig(name="mine", path=str(path), qry_text="question", pos_text="t"))
    with pytest.raises(ValueError, match="missing column.*'pic'"):
        read_pairs(PairSourceConfig(name="mine", path=str(path), qry_text="q", pos_text="t", qry_image="pic"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": "ok", "t": "x"}\n{not json\n')
    with pytest.raises(ValueError, match="bad.jsonl: line 2, column 2: not valid JSON"):
        read_pairs(PairSourceConfig(name="b", path=str(bad), qry_text="q", pos_text="t"))


def test_empty_query_text_is_a_bad_row_naming_source_and_row(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"q": "fine", "t": "x"}\n{"q": "  ", "t": "y"}\n')
    src = read_pairs(PairSourceConfig(name="mine", path=str(path), qry_text="q", pos_text="t"))
    src.record(0)
    with pytest.raises(BadRowError, match="source 'mine' row 2: empty query text"):
        src.record(1)


def test_build_sources_puts_mmeb_subsets_then_pair_files(mmeb_root, tmp_path):
    path = _write_pairs(tmp_path, "jsonl")
    cfg = DataConfig(
        mmeb_train_dir=str(mmeb_root),
        subsets=["MSCOCO_t2i"],
        pairs=[PairSourceConfig(name="mine", path=str(path), qry_text="q", pos_text="t", weight=2.0)],
    )
    sources = build_sources(cfg)
    assert [(s.name, s.weight) for s in sources] == [("MSCOCO_t2i", 1.0), ("mine", 2.0)]
    with pytest.raises(ValueError, match="no training data"):
        build_sources(DataConfig())
