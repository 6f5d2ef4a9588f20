"""Token-budget eval batches (eval.batch_tokens) and the per-dataset throughput figures."""

import json
import random

import pytest
from PIL import Image

from vlm2vec.config import EvalConfig
from vlm2vec.encoding.cache import RepCache
from vlm2vec.encoding.items import Item, item_key
from vlm2vec.encoding.schedule import schedule_encoding
from vlm2vec.encoding.token_counts import item_token_counts
from vlm2vec.evaluation import EvalStats, evaluate_model
from vlm2vec.model import EmbeddingModel
from vlm2vec.testing import tiny_model_config
from vlm2vec.testing.synthetic import write_synthetic_mmeb_eval

KINDS = {"ImageNet-1K": "classification", "MSCOCO_t2i": "retrieval_t2i", "MSCOCO": "grounding"}


def _check_layout(batches, counts, budget):
    assert sorted(i for b in batches for i in b) == list(range(len(counts)))  # every item exactly once
    for b in batches:
        cost = len(b) * max(counts[i] for i in b)
        assert cost <= budget or len(b) == 1, (b, cost)


def test_token_batches_stay_within_budget_cover_every_item_once_and_ignore_the_cache(tmp_path):
    rng = random.Random(0)
    items = [Item(f"text {i}", f"{i}.png" if i % 3 == 0 else "") for i in range(200)]
    counts = [rng.choice([3, 5, 9, 20, 40, 700, 900]) for _ in items]
    for budget in (1, 50, 256, 800, 4096):
        schedule = schedule_encoding(items, 16, None, batch_tokens=budget, token_counts=counts)
        _check_layout(schedule.batches, counts, budget)
    schedule = schedule_encoding(items, 16, None, batch_tokens=800, token_counts=counts)
    assert max(len(b) for b in schedule.batches) > 16  # short items share big batches: rows follow tokens
    assert any(counts[b[0]] >= 700 and len(b) == 1 for b in schedule.batches)

    # a cache holding some of the items (a warm run) changes what is encoded, never the batches
    cache = RepCache(tmp_path / "cache")
    some = [i for b in schedule.batches[::3] for i in b]
    import torch

    cache.save([item_key(items[i]) for i in some], torch.zeros(len(some), 4))
    warm = schedule_encoding(items, 16, cache, batch_tokens=800, token_counts=counts)
    assert warm.batches == schedule.batches and len(warm.todo) < len(schedule.batches)


def test_estimated_token_counts_match_the_processed_lengths(tiny_backbone, tmp_path):
    backbone, folder = tiny_backbone
    model = EmbeddingModel.from_config(tiny_model_config(backbone, folder))
    for k, size in enumerate([(64, 64), (120, 56), (56, 200)]):
        Image.new("RGB", size, "red").save(tmp_path / f"{k}.png")
    items = [
        Item("<|image_1|>\nRepresent the given image for classification", "0.png"),
        Item("Find a caption for <|image_1|> the given image", "1.png"),
        Item("<|image_1|>", "2.png"),
        Item("a red circle on a blue background"),
        Item("the quick brown fox jumps over the lazy dog " * 20),  # truncated to max_length
    ]
    counts = item_token_counts(model.processor, items, tmp_path, model.cfg.max_length)
    real = []
    for it in items:
        images = [[Image.open(tmp_path / it.image).convert("RGB")]] if it.image else None
        real.append(int(model.processor([it.text], images)["attention_mask"].sum()))
    assert real[2] > 4  # an image alone is several tokens: the estimate below counts them
    for est, true in zip(counts, real):
        assert abs(est - true) <= 2, (counts, real)


@pytest.mark.slow
def test_token_batches_give_row_batch_results_and_throughput_stays_out_of_results(tiny_qwen_dir, tmp_path):
    data = write_synthetic_mmeb_eval(
        tmp_path / "data", datasets=KINDS, num_queries=5, num_candidates=4, seed=4
    )
    model = EmbeddingModel.from_config(tiny_model_config("qwen2_vl", tiny_qwen_dir))
    rows = []
    encode = model.encode
    model.encode = lambda inputs: rows.append(int(inputs["input_ids"].shape[0])) or encode(inputs)

    def run(out, **kw):
        base = dict(data_dir=str(data), output_dir=str(tmp_path / out), batch_size=3, skip_missing=True)
        stats = EvalStats()
        return evaluate_model(model, EvalConfig(**{**base, **kw}), stats=stats), stats

    by_rows, _ = run("rows")
    rows.clear()
    by_tokens, stats = run("tokens", batch_tokens=400)
    assert max(rows) > 3  # text items were batched by tokens, not 3 at a time
    for name in KINDS:  # embeddings do not depend on batch mates: the same ranks, scores to 1e-5
        a = [json.loads(x) for x in (tmp_path / "rows" / "predictions" / f"{name}.jsonl").open()]
        b = [json.loads(x) for x in (tmp_path / "tokens" / "predictions" / f"{name}.jsonl").open()]
        assert [p["rank"] for p in a] == [p["rank"] for p in b]
        for p, q in zip(a, b):
            assert [s for _, s in [(t["candidate"], t["score"]) for t in p["top"]]] == pytest.approx(
                [t["score"] for t in q["top"]], abs=1e-5
            )
        assert by_rows["datasets"][name] == by_tokens["datasets"][name]

    # throughput per dataset, apart from the results; each encoded item counted once
    for name in KINDS:
        t = json.loads((tmp_path / "tokens" / "throughput" / f"{name}.json").read_text())
        assert t["items"] == by_tokens["datasets"][name]["distinct_items"] and t["items_per_s"] > 0
        assert 0 <= t["input_wait"] <= 1 and t["batches"] == "tokens-400"
        assert stats.throughput[name]["items"] == t["items"]
    results = {p.name: p.read_bytes() for p in (tmp_path / "tokens" / "datasets").iterdir()}
    assert all("throughput" not in json.loads(v) for v in results.values())

    # a warm cache (fresh results folder) encodes nothing and writes byte-identical results
    rows.clear()
    cache = str(tmp_path / "tokens" / "cache")
    run("warm", batch_tokens=400, cache_dir=cache)
    assert rows == []
    assert {p.name: p.read_bytes() for p in (tmp_path / "warm" / "datasets").iterdir()} == results
    for name in KINDS:
        assert (tmp_path / "warm" / "predictions" / f"{name}.jsonl").read_bytes() == (
            tmp_path / "tokens" / "predictions" / f"{name}.jsonl"
        ).read_bytes()
    # another layout is another key: neither its results nor its cache are taken for this one
    run("warm", batch_tokens=300, cache_dir=cache)
    assert sum(rows) == sum(r["distinct_items"] for r in by_tokens["datasets"].values())
