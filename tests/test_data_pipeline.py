"""Dataset + collator + loader with a real (tiny) processor: batches, keys, shards, bad rows, truncation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from vlm2vec.config import DataConfig, PairSourceConfig
from vlm2vec.data import BadRowError, PairCollator, PairDataset, build_sources, build_train_loader, read_pairs
from vlm2vec.model import load_processor
from vlm2vec.testing import tiny_model_config
from vlm2vec.testing.synthetic import write_synthetic_mmeb_train


@pytest.fixture(scope="module")
def processor(tiny_qwen_dir):
    return load_processor(tiny_model_config("qwen2_vl", tiny_qwen_dir))


@pytest.fixture(scope="module")
def mmeb_root(tmp_path_factory) -> Path:
    subsets = {"ImageNet_1K": "classification", "MSCOCO_t2i": "retrieval_t2i"}
    return write_synthetic_mmeb_train(tmp_path_factory.mktemp("mmeb"), subsets=subsets, rows_per_subset=8)


def _pairs(tmp_path: Path, lines: list[str]) -> PairSourceConfig:
    Image.new("RGB", (40, 30), "red").save(tmp_path / "ok.png")
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return PairSourceConfig(
        name="mine", path=str(path), qry_text="q", qry_image="img", pos_text="t", pos_image=None
    )


def test_loader_yields_processed_query_target_negative_batches_with_keys(mmeb_root, processor):
    cfg = DataConfig(mmeb_train_dir=str(mmeb_root))
    sources = build_sources(cfg)
    loader, sampler = build_train_loader(
        cfg, sources, processor, per_device_batch_size=4, num_negatives=1, max_length=32, seed=0, max_steps=3
    )
    batches = list(loader)
    assert len(batches) == 3
    b = batches[0]
    assert b["qry"]["input_ids"].shape[0] == 4 and b["tgt"]["input_ids"].shape[0] == 4
    assert b["neg"]["input_ids"].shape[0] == 4  # one hard negative per query
    assert b["tgt_keys"].dtype == torch.long and b["tgt_keys"].shape == (4,)
    assert b["num_tokens"] == sum(int(b[s]["attention_mask"].sum()) for s in ("qry", "tgt", "neg"))
    expected = [sampler.locate(i) for i in sampler.global_batch(0)]
    assert [(sources[s].name, r) for s, r in expected] == b["rows"]


def test_equal_targets_get_equal_keys(mmeb_root, processor):
    # ImageNet_1K targets are class names: rows with the same class must share a key
    src = build_sources(DataConfig(mmeb_train_dir=str(mmeb_root), subsets=["ImageNet_1K"]))
    ds = PairDataset(src)
    examples = [ds[i] for i in range(len(ds))]
    batch = PairCollator(processor, max_length=32)(examples)
    texts = [e.pos.text for e in examples]
    for i in range(len(texts)):
        for j in range(len(texts)):
            assert (texts[i] == texts[j]) == bool(batch["tgt_keys"][i] == batch["tgt_keys"][j])


def test_two_ranks_load_disjoint_halves_of_each_global_batch(mmeb_root, processor):
    cfg = DataConfig(mmeb_train_dir=str(mmeb_root))
    sources = build_sources(cfg)
    kw = dict(per_device_batch_size=3, max_length=32, seed=1, world_size=2, max_steps=2)
    rows = [[b["rows"] for b in build_train_loader(cfg, sources, processor, rank=r, **kw)[0]] for r in (0, 1)]
    single = [
        b["rows"]
        for b in build_train_loader(
            cfg, sources, processor, per_device_batch_size=6, max_length=32, seed=1, max_steps=2
        )[0]
    ]
    assert [a + b for a, b in zip(*rows)] == single


def test_missing_image_error_names_source_row_and_path(tmp_path, processor):
    cfg = _pairs(
        tmp_path,
        [
            '{"q": "<|image_1|> a", "img": "ok.png", "t": "x"}',
            '{"q": "<|image_1|> b", "img": "gone.png", "t": "y"}',
        ],
    )
    ds = PairDataset([read_pairs(cfg)])
    ds[0]
    with pytest.raises(BadRowError, match=r"source 'mine' row 2: image file not found \(path: .*gone.png\)"):
        ds[1]


def test_missing_image_error_crosses_dataloader_workers(tmp_path, processor):
    cfg = _pairs(tmp_path, ['{"q": "<|image_1|> b", "img": "gone.png", "t": "y"}'] * 2)
    data = DataConfig(pairs=[cfg], num_workers=1)
    loader, _ = build_train_loader(data, build_sources(data), processor, per_device_batch_size=2, max_steps=1)
    with pytest.raises(BadRowError, match="source 'mine' row [12]: image file not found.*gone.png"):
        next(iter(loader))


def test_corrupt_image_and_placeholder_mismatch_are_bad_rows(tmp_path, processor):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    cfg = _pairs(
        tmp_path,
        [
            '{"q": "<|image_1|> a", "img": "broken.png", "t": "x"}',
            '{"q": "<|image_1|> <|image_2|>", "img": "ok.png", "t": "y"}',
        ],
    )
    ds = PairDataset([read_pairs(cfg)])
    with pytest.raises(BadRowError, match="row 1: cannot read image.*broken.png"):
        ds[0]
    with pytest.raises(BadRowError, match="row 2: query: .*2 image placeholder"):
        ds[1]


def test_skip_bad_rows_replaces_and_reports_them(tmp_path, processor):
    cfg = _pairs(
        tmp_path,
        [
            '{"q": "<|image_1|> a", "img": "gone.png", "t": "x"}',
            '{"q": "", "t": "empty query"}',
            '{"q": "<|image_1|> c", "img": "ok.png", "t": "z"}',
            '{"q": "fine", "t": "w"}',
        ],
    )
    data = DataConfig(pairs=[cfg], skip_bad_rows=True)
    sources = build_sources(data)
    ds = PairDataset(sources, skip_bad_rows=True)
    ex = ds[0]
    assert ex.row == 2 and len(ex.skipped) == 2  # rows 0 and 1 skipped, row 2 used in their place
    assert "gone.png" in ex.skipped[0] and "empty query text" in ex.skipped[1]
    loader, _ = build_train_loader(
        data, sources, processor, per_device_batch_size=4, max_length=32, max_steps=1
    )
    batch = next(iter(loader))
    assert batch["qry"]["input_ids"].shape[0] == 4  # batch shape kept
    assert len(batch["skipped"]) == 3  # row 0 -> 2 skips, row 1 -> 1 skip


def test_long_text_is_truncated_but_image_tokens_are_kept(tmp_path, processor):
    img = Image.new("RGB", (56, 56), "blue")
    one = PairCollator(processor, max_length=1000)._process
    short = PairCollator(processor, max_length=12)._process
    from vlm2vec.data.dataset import LoadedSide

    side = LoadedSide("<|image_1|> " + "red circle " * 200, [img], ("x.png",))
    full, cut = one([side]), short([side])
    assert cut["input_ids"].shape[1] < full["input_ids"].shape[1]
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((cut["input_ids"] == image_id).sum()) == int((full["input_ids"] == image_id).sum()) > 0
