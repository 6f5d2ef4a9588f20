"""The synthetic MMEB writers: real layouts and columns, resolvable images, determinism, sound labels."""

from __future__ import annotations

import hashlib
import random
import re
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vlm2vec.testing.synthetic import (
    DEFAULT_EVAL_DATASETS,
    DEFAULT_TRAIN_SUBSETS,
    EVAL_COLUMNS,
    KIND_BY_META_TASK,
    KINDS,
    MMEB_EVAL_KINDS,
    MMEB_TRAIN_KINDS,
    TRAIN_COLUMNS,
    TRAIN_SPLITS,
    write_synthetic_mmeb_eval,
    write_synthetic_mmeb_train,
)
from vlm2vec.testing.synthetic.images import COLORS, COUNT_WORDS, WORDS

TOKEN = "<|image_1|>"
TRAIN_ROWS = 24


@pytest.fixture(scope="module")
def train_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_mmeb_train(tmp_path_factory.mktemp("train"), rows_per_subset=TRAIN_ROWS)


@pytest.fixture(scope="module")
def eval_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_mmeb_eval(tmp_path_factory.mktemp("eval"))


def _train_rows(root: Path, subset: str, split: str = "original") -> list[dict]:
    return pq.read_table(root / subset / f"{split}-00000-of-00001.parquet").to_pylist()


def _eval_rows(root: Path, name: str) -> list[dict]:
    return pq.read_table(root / name / "test-00000-of-00001.parquet").to_pylist()


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)


def _colour_counts(path: Path) -> dict[str, int]:
    """The oracle's only feature: how many pixels carry each palette colour exactly."""
    pixels = _pixels(path)
    return {name: int((pixels == rgb).all(axis=1).sum()) for name, rgb in COLORS.items()}


def _dominant_colour(path: Path) -> str:
    counts = _colour_counts(path)
    return max(counts, key=counts.__getitem__)


def _colours_present(path: Path, min_pixels: int = 8) -> set[str]:
    return {name for name, n in _colour_counts(path).items() if n >= min_pixels}


def _colour_words(text: str) -> set[str]:
    return {name for name in COLORS if re.search(rf"\b{name}\b", text)}


def _all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- layout, columns, loading --------------------------------------------------------------------


def test_train_folders_load_offline_with_exact_string_columns(train_root: Path, tmp_path: Path) -> None:
    for subset in DEFAULT_TRAIN_SUBSETS:
        for split in TRAIN_SPLITS:
            path = train_root / subset / f"{split}-00000-of-00001.parquet"
            ds = datasets.load_dataset(
                "parquet", data_files={split: str(path)}, split=split, cache_dir=tmp_path
            )
            assert list(ds.column_names) == list(TRAIN_COLUMNS)
            assert all(ds.features[c] == datasets.Value("string") for c in TRAIN_COLUMNS)
            assert ds.num_rows == TRAIN_ROWS


def test_eval_folders_load_offline_with_exact_columns_and_list_targets(
    eval_root: Path, tmp_path: Path
) -> None:
    for name in DEFAULT_EVAL_DATASETS:
        path = eval_root / name / "test-00000-of-00001.parquet"
        ds = datasets.load_dataset(
            "parquet", data_files={"test": str(path)}, split="test", cache_dir=tmp_path
        )
        assert list(ds.column_names) == list(EVAL_COLUMNS)
        assert ds.features["qry_text"] == datasets.Value("string")
        assert ds.features["qry_img_path"] == datasets.Value("string")
        assert ds.data.schema.field("tgt_text").type == pa.list_(pa.string())
        assert ds.data.schema.field("tgt_img_path").type == pa.list_(pa.string())
        assert ds.num_rows == 20
        assert all(len(t) == len(p) == 10 for t, p in zip(ds["tgt_text"], ds["tgt_img_path"]))


def test_train_image_paths_are_relative_to_root_and_open(train_root: Path) -> None:
    for subset in DEFAULT_TRAIN_SUBSETS:
        for row in _train_rows(train_root, subset):
            for col in ("qry_image_path", "pos_image_path", "neg_image_path"):
                rel = row[col]
                if not rel:
                    continue
                assert rel.startswith(f"images/{subset}/") and not Path(rel).is_absolute()
                with Image.open(train_root / rel) as image:
                    assert image.format == "PNG" and image.mode == "RGB"
            if row["qry_image_path"]:
                with Image.open(train_root / row["qry_image_path"]) as image:
                    assert 48 <= min(image.size) and max(image.size) <= 96


def test_eval_image_paths_are_relative_to_images_folder_and_open(eval_root: Path) -> None:
    image_root = eval_root / "images"
    for name in DEFAULT_EVAL_DATASETS:
        for row in _eval_rows(eval_root, name):
            for rel in [row["qry_img_path"], *row["tgt_img_path"]]:
                if rel:
                    assert rel.startswith(f"{name}/") and not Path(rel).is_absolute()
                    with Image.open(image_root / rel) as image:
                        assert image.format == "PNG" and image.mode == "RGB"


def test_image_placeholder_present_exactly_when_an_image_goes_with_the_text(
    train_root: Path, eval_root: Path
) -> None:
    pairs = []
    for subset in DEFAULT_TRAIN_SUBSETS:
        for split in TRAIN_SPLITS:
            for row in _train_rows(train_root, subset, split):
                pairs.append((row["qry"], row["qry_image_path"]))
                pairs.append((row["pos_text"], row["pos_image_path"]))
                pairs.append((row["neg_text"], row["neg_image_path"]))
    for name in DEFAULT_EVAL_DATASETS:
        for row in _eval_rows(eval_root, name):
            pairs.append((row["qry_text"], row["qry_img_path"]))
            pairs += list(zip(row["tgt_text"], row["tgt_img_path"]))
    assert any(image for _, image in pairs) and any(not image for _, image in pairs)
    for text, image in pairs:
        assert text.count(TOKEN) == (1 if image else 0), (text, image)
        assert text or image  # never an empty item


# --- determinism -----------------------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    subsets = {"VOC2007": "classification", "MSCOCO": "grounding", "VisDial": "retrieval_t2i"}
    evals = {"OK-VQA": "vqa", "MSCOCO_i2t": "retrieval_i2t"}
    runs = {}
    for tag, seed in (("a", 3), ("b", 3), ("c", 4)):
        write_synthetic_mmeb_train(tmp_path / tag / "train", subsets=subsets, rows_per_subset=6, seed=seed)
        write_synthetic_mmeb_eval(
            tmp_path / tag / "eval", datasets=evals, num_queries=4, num_candidates=3, seed=seed
        )
        runs[tag] = _all_files(tmp_path / tag)
    assert runs["a"] == runs["b"]
    differing = [name for name in runs["a"] if runs["a"][name] != runs["c"].get(name)]
    parquet_files = [name for name in runs["a"] if name.endswith(".parquet")]
    assert set(parquet_files) <= set(differing)
    assert len(differing) > len(runs["a"]) // 2


def test_eval_images_are_held_out_from_train(train_root: Path, eval_root: Path) -> None:
    def digests(folder: Path) -> set[str]:
        return {hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.png")}

    train, held_out = digests(train_root / "images"), digests(eval_root / "images")
    assert train and held_out and not train & held_out


# --- train content ---------------------------------------------------------------------------------


def test_every_train_row_has_a_hard_negative_other_than_the_positive(train_root: Path) -> None:
    for subset, kind in DEFAULT_TRAIN_SUBSETS.items():
        rows = _train_rows(train_root, subset)
        for row in rows:
            assert row["neg_text"] or row["neg_image_path"]
            assert (row["neg_text"], row["neg_image_path"]) != (row["pos_text"], row["pos_image_path"])
        if kind in ("classification", "vqa"):
            assert all(row["neg_text"] != row["pos_text"] for row in rows)
        if kind == "classification":  # hard: the negative class shares the colour or the shape
            assert all(set(row["neg_text"].split()) & set(row["pos_text"].split()) for row in rows)


def test_classification_rows_share_positives_like_mmeb(train_root: Path) -> None:
    positives = [row["pos_text"] for row in _train_rows(train_root, "ImageNet_1K")]
    assert len(set(positives)) < len(positives)


def test_diverse_instruction_keeps_content_and_changes_wording(train_root: Path) -> None:
    for subset in DEFAULT_TRAIN_SUBSETS:
        original = _train_rows(train_root, subset, "original")
        diverse = _train_rows(train_root, subset, "diverse_instruction")
        assert len(original) == len(diverse)
        for a, b in zip(original, diverse):
            for col in ("qry_image_path", "pos_image_path", "neg_image_path"):
                assert a[col] == b[col]
            assert a["qry"] != b["qry"]
            if not a["pos_image_path"]:  # a text target is content, not wording
                assert (a["pos_text"], a["neg_text"]) == (b["pos_text"], b["neg_text"])


# --- eval content ----------------------------------------------------------------------------------


def test_eval_candidates_are_distinct_within_a_query_and_shared_across_queries(eval_root: Path) -> None:
    for name in DEFAULT_EVAL_DATASETS:
        rows = _eval_rows(eval_root, name)
        distinct = set()
        for row in rows:
            items = list(zip(row["tgt_text"], row["tgt_img_path"]))
            assert len(set(items)) == len(items)
            distinct |= set(items)
        slots = sum(len(row["tgt_text"]) for row in rows)
        assert len(distinct) < slots / 2, name


def test_eval_candidate_zero_matches_the_query_content(eval_root: Path) -> None:
    """Read the images with a colour histogram: candidate 0 agrees with the query, for every kind."""
    images = eval_root / "images"
    checked = dict.fromkeys(DEFAULT_EVAL_DATASETS, 0)
    for name, kind in DEFAULT_EVAL_DATASETS.items():
        for row in _eval_rows(eval_root, name):
            pos_text, pos_image, qry = row["tgt_text"][0], row["tgt_img_path"][0], row["qry_text"]
            if kind == "classification":
                ok = _dominant_colour(images / row["qry_img_path"]) == pos_text.split()[0]
            elif kind == "vqa":
                present = _colours_present(images / row["qry_img_path"])
                if "What color" in qry:
                    ok = pos_text in present
                elif "What shape" in qry:
                    ok = _colour_words(qry) <= present
                elif "How many" in qry:
                    ok = COUNT_WORDS[len(present) - 1] == pos_text
                else:  # the written word: no OCR here, but it must be one of the words drawn
                    ok = "word" in qry and pos_text in WORDS
            elif kind == "retrieval_t2i":
                ok = _colours_present(images / pos_image) == _colour_words(qry)
            elif kind == "retrieval_i2t":
                ok = _colours_present(images / row["qry_img_path"]) == _colour_words(pos_text)
            else:  # grounding: the crop's main colour is the named object's, and it is in the image
                label_colour = _colour_words(qry)
                crop_colour = _dominant_colour(images / pos_image)
                ok = {crop_colour} == label_colour and crop_colour in _colours_present(
                    images / row["qry_img_path"]
                )
            checked[name] += ok
    assert checked == dict.fromkeys(DEFAULT_EVAL_DATASETS, 20)


def test_colour_histogram_oracle_beats_chance_on_classification(eval_root: Path) -> None:
    """Learnable in principle: a hand-written oracle far above chance, near chance on mismatched images."""
    rng = random.Random(0)

    def oracle_accuracy(rows: list[dict], image_of: list[str]) -> float:
        hits = 0
        for row, image in zip(rows, image_of):
            colour = _dominant_colour(eval_root / "images" / image)
            scores = [(cand.split()[0] == colour, rng.random()) for cand in row["tgt_text"]]
            hits += max(range(len(scores)), key=scores.__getitem__) == 0
        return hits / len(rows)

    rows = [row for name in ("ImageNet-1K", "Place365") for row in _eval_rows(eval_root, name)]
    images = [row["qry_img_path"] for row in rows]
    chance = 1 / len(rows[0]["tgt_text"])
    assert oracle_accuracy(rows, images) >= 4 * chance
    shifted = images[1:] + images[:1]  # each query paired with another query's image
    assert oracle_accuracy(rows, shifted) <= 2.5 * chance


# --- name maps, scale, errors ----------------------------------------------------------------------


def test_name_maps_cover_mmeb_with_known_kinds() -> None:
    assert len(MMEB_EVAL_KINDS) == 36 and len(MMEB_TRAIN_KINDS) == 20
    assert set(MMEB_EVAL_KINDS.values()) == set(KINDS) and set(KIND_BY_META_TASK.values()) <= set(KINDS)
    assert sum(kind == "classification" for kind in MMEB_EVAL_KINDS.values()) == 10
    assert sum(kind == "grounding" for kind in MMEB_EVAL_KINDS.values()) == 4
    assert "ImageNet_1K" in MMEB_TRAIN_KINDS and "ImageNet-1K" in MMEB_EVAL_KINDS
    assert set(DEFAULT_TRAIN_SUBSETS) <= set(MMEB_TRAIN_KINDS)
    assert set(DEFAULT_EVAL_DATASETS) <= set(MMEB_EVAL_KINDS)


def test_all_36_eval_datasets_are_written_in_seconds(tmp_path: Path) -> None:
    start = time.perf_counter()
    root = write_synthetic_mmeb_eval(tmp_path, datasets=MMEB_EVAL_KINDS, num_queries=4, num_candidates=5)
    elapsed = time.perf_counter() - start
    for name in MMEB_EVAL_KINDS:
        rows = _eval_rows(root, name)
        assert len(rows) == 4 and all(len(row["tgt_text"]) == 5 for row in rows)
    assert elapsed < 10.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: write_synthetic_mmeb_train(p, subsets={"X": "captioning"}), "unknown kind"),
        (lambda p: write_synthetic_mmeb_train(p, subsets={"../X": "vqa"}), "bad subsets name"),
        (lambda p: write_synthetic_mmeb_train(p, splits=("train",)), "splits"),
        (lambda p: write_synthetic_mmeb_train(p, rows_per_subset=0), "rows_per_subset"),
        (lambda p: write_synthetic_mmeb_eval(p, num_candidates=1), "num_candidates"),
        (
            lambda p: write_synthetic_mmeb_eval(p, datasets={"VOC2007": "classification"}, num_candidates=49),
            "classes",
        ),
        (lambda p: write_synthetic_mmeb_eval(p, datasets={"GQA": "vqa"}, num_candidates=30), "answers"),
        (lambda p: write_synthetic_mmeb_eval(p, datasets={}), "non-empty"),
    ],
)
def test_bad_arguments_raise_a_clear_error(tmp_path: Path, call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(tmp_path)
    assert not any(tmp_path.rglob("*.parquet"))


def test_demo_v2_slice_is_kept_when_current_and_written_again_when_older(tmp_path):
    """The demo reuses its V2 slice only when an earlier demo wrote this version of it: figures on an
    older slice (another content) would not be this demo's."""
    from vlm2vec.testing.demo_assets import prepare_demo_v2_slice

    root = tmp_path / "mmeb-v2"
    assert prepare_demo_v2_slice(root) == root
    assert prepare_demo_v2_slice(root) is None
    (root / "demo-slice.json").unlink()  # as an earlier demo left it
    (root / "video-tasks" / "left-over").mkdir()
    assert prepare_demo_v2_slice(root) == root
    assert not (root / "video-tasks" / "left-over").exists()
