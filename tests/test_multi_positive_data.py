"""Rows with several positives: read from a list cell, one drawn per step (seeded, the same on resume
and on every rank) or all of them collated with the query each belongs to; an empty list is an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from vlm2vec.config import DataConfig, PairSourceConfig
from vlm2vec.data import BadRowError, PairCollator, PairDataset, build_sources, build_train_loader, read_pairs
from vlm2vec.errors import DataError
from vlm2vec.model import load_processor
from vlm2vec.testing import tiny_model_config

POSITIVES = [["a cat", "a small cat", "kitten", "tabby"], ["a dog"], ["a fox", "red fox"]]


@pytest.fixture(scope="module")
def processor(tiny_qwen_dir):
    return load_processor(tiny_model_config("qwen2_vl", tiny_qwen_dir))


def _write(tmp_path: Path, rows: list[dict]) -> PairSourceConfig:
    path = tmp_path / "multi.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return PairSourceConfig(
        name="multi", path=str(path), qry_text="q", qry_image=None, pos_text="t", pos_image=None
    )


@pytest.fixture
def multi(tmp_path) -> PairSourceConfig:
    return _write(tmp_path, [{"q": f"query {i}", "t": pos} for i, pos in enumerate(POSITIVES * 4)])


def test_sample_draws_one_positive_per_step_reproducibly(multi):
    ds = PairDataset([read_pairs(multi)], multi_positive="sample", seed=7)
    draws = [ds[(0, step)].pos.text for step in range(12)]
    assert set(draws) <= set(POSITIVES[0]) and len(set(draws)) > 1  # a new draw per step
    again = PairDataset([read_pairs(multi)], multi_positive="sample", seed=7)  # a resumed run
    assert [again[(0, step)].pos.text for step in range(12)] == draws
    other_seed = PairDataset([read_pairs(multi)], multi_positive="sample", seed=8)
    assert [other_seed[(0, step)].pos.text for step in range(12)] != draws
    assert all(not ds[(i, 3)].more_pos for i in range(6))


def test_sampled_positives_are_the_same_with_one_and_two_processes(multi, processor):
    data = DataConfig(pairs=[multi])
    sources = build_sources(data)
    kw = dict(max_length=16, seed=3, max_steps=4, multi_positive="sample")
    single = [
        b["tgt_keys"].tolist()
        for b in build_train_loader(data, sources, processor, per_device_batch_size=6, **kw)[0]
    ]
    halves = [
        [
            b["tgt_keys"].tolist()
            for b in build_train_loader(
                data, sources, processor, per_device_batch_size=3, rank=r, world_size=2, **kw
            )[0]
        ]
        for r in (0, 1)
    ]
    assert [a + b for a, b in zip(*halves)] == single


def test_all_collates_every_positive_with_its_query(multi, processor):
    ds = PairDataset([read_pairs(multi)], multi_positive="all")
    examples = [ds[i] for i in range(3)]
    assert [[e.pos.text] + [p.text for p in e.more_pos] for e in examples] == POSITIVES
    batch = PairCollator(processor, max_length=16, all_positives=True)(examples)
    assert batch["tgt_owner"].tolist() == [0, 0, 0, 0, 1, 2, 2]
    assert batch["tgt"]["input_ids"].shape[0] == 7 == batch["tgt_keys"].shape[0]
    assert batch["qry"]["input_ids"].shape[0] == 3
    assert PairCollator(processor, max_length=16)(examples[1:2])["tgt_owner"] is None


def test_positive_images_are_parallel_to_the_positive_texts(tmp_path):
    for name in ("p1.png", "p2.png"):
        Image.new("RGB", (30, 30), "blue").save(tmp_path / name)
    cfg = _write(tmp_path, [{"q": "q", "t": ["first", "second"], "img": ["p1.png", "p2.png"]}])
    cfg.pos_image, cfg.image_root = "img", str(tmp_path)
    record = read_pairs(cfg).record(0)
    assert [(p.text, p.images) for p in record.positives] == [
        ("<|image_1|>\nfirst", (str(tmp_path / "p1.png"),)),
        ("<|image_1|>\nsecond", (str(tmp_path / "p2.png"),)),
    ]
    bad = _write(tmp_path, [{"q": "q", "t": ["first", "second"], "img": ["p1.png"]}])
    bad.pos_image = "img"
    with pytest.raises(BadRowError, match="row 1: 'img' must list one entry per positive \\(2\\)"):
        read_pairs(bad).record(0)


def test_an_empty_list_of_positives_is_a_one_line_error_naming_file_and_row(tmp_path):
    cfg = _write(tmp_path, [{"q": "a", "t": ["x"]}, {"q": "b", "t": ["y", "z"]}, {"q": "c", "t": []}])
    with pytest.raises(
        DataError, match=r"source 'multi' \(.*multi.jsonl\) row 3: 't' holds an empty list"
    ) as err:
        read_pairs(cfg)
    assert "\n" not in str(err.value)


@pytest.mark.slow
@pytest.mark.usefixtures("fresh_accelerate")
def test_training_with_all_positives_logs_masked_duplicates(tmp_path, tiny_qwen_dir):
    """The loop hands `tgt_owner` to GradCache and the loss: two steps train, and the duplicate class
    targets ("a dog" in two rows) are counted as masked in metrics.jsonl."""
    from training_setup import tiny_train_config
    from vlm2vec.training import train

    rows = [{"q": f"query {i}", "t": pos} for i, pos in enumerate(POSITIVES * 4)]
    data = DataConfig(pairs=[_write(tmp_path, rows)])
    cfg = tiny_train_config(tmp_path / "run", tiny_qwen_dir, data, max_steps=2, multi_positive="all")
    cfg.train.mask_false_negatives = True
    cfg.data.sub_batch = "source"
    train(cfg)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    assert all(line["masked_negatives"] > 0 for line in lines)  # 4 rows of 12 repeat content
