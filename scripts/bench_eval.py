"""Evaluation throughput: distinct items encoded vs naive (query, candidate) slots, and items/s.

    python scripts/bench_eval.py --device cpu                                     # CPU, tiny Qwen2-VL
    python scripts/bench_eval.py --device cuda --dtype bfloat16 --hidden-size 1024 --layers 8 \
        --queries 200 --candidates 40 --batch-size 64 --num-workers 4                 # ~1 min on one H100

Writes a synthetic MMEB-eval folder (one dataset per kind: classification, VQA, text->image and
image->text retrieval, grounding) and a randomly initialised Qwen2-VL of the given size, then runs
`vlm2vec.evaluation.evaluate_model` twice: a cold run (everything encoded) and a warm run that reuses
the embedding cache. Prints one JSON object:
    naive_slots      queries + queries x candidates: what a per-slot evaluator encodes
    items_encoded    distinct (text, image) items actually encoded (queries and candidates apart)
    dedup_factor     naive_slots / items_encoded
    items_per_s      items_encoded / encoding time (image loading + processor + forward), cold run
    cold_s, warm_s   wall time of the two runs (warm: nothing encoded, scoring and reports only)

With `--compare` (default) a first cold run takes today's encoding path (`--today-workers` DataLoader
workers, default 0 as `eval.num_workers`; torch's prefetch of 2; no pinned memory) and the result
adds `today` and `new_over_today` (items/s and encode time ratios); the figures above are the new
path's (`--num-workers` workers, `loader.PREFETCH_FACTOR` batches each, pinned memory on CUDA).
With `--batch-tokens N` (default 1024; 0: off) one more cold run takes the worker pipeline with batches
sized by padded tokens (`eval.batch_tokens`) and adds `tokens` and `tokens_over_today`; with
`--compare` a last one takes today's loader with token batches (`tokens_today_workers`: the batch
layout alone against today). Every run
reports `padded_share` (padding positions / all positions the model computed, from the attention
masks) and `batches` (forward calls).
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

KINDS = {
    "ImageNet-1K": "classification",
    "OK-VQA": "vqa",
    "MSCOCO_t2i": "retrieval_t2i",
    "MSCOCO_i2t": "retrieval_i2t",
    "MSCOCO": "grounding",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default=None, help="default: bf16 on cuda")
    p.add_argument("--hidden-size", type=int, default=64, help="language model width (multiple of 16)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--queries", type=int, default=40, help="queries per dataset")
    p.add_argument(
        "--candidates", type=int, default=20, help="candidates per query (<= 48 for classification)"
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-workers", type=int, default=2, help="new path: DataLoader workers")
    p.add_argument("--today-workers", type=int, default=0, help="today's path: DataLoader workers")
    p.add_argument("--compare", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--batch-tokens", type=int, default=1024, help="token-budget run (0: skip it)")
    p.add_argument("--repeats", type=int, default=3, help="cold runs per path, alternating; fastest kept")
    p.add_argument("--workdir", default=None, help="default: a temporary folder")
    return p.parse_args(argv)


def main(argv: list[str]) -> dict:
    args = parse_args(argv)
    import torch

    from vlm2vec.config import EvalConfig
    from vlm2vec.evaluation import EvalStats, evaluate_model
    from vlm2vec.model import EmbeddingModel
    from vlm2vec.testing import make_tiny_checkpoint, tiny_model_config
    from vlm2vec.testing.synthetic import write_synthetic_mmeb_eval

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible")
    dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_eval_"))
    if args.workdir is None:  # a temporary folder goes away with the process
        atexit.register(shutil.rmtree, work, True)
    for stale in (
        "cache",
        "cache_today",
        "cache_tokens",
        "cache_tokens_today",
        "tokens",
        "tokens_today",
        "today",
        "cold",
        "warm",
    ):  # a reused --workdir: the cold run must really start cold
        shutil.rmtree(work / stale, ignore_errors=True)
    t0 = time.perf_counter()
    data = write_synthetic_mmeb_eval(
        work / "data", datasets=KINDS, num_queries=args.queries, num_candidates=args.candidates, seed=0
    )
    folder = make_tiny_checkpoint(
        "qwen2_vl", work / "model", hidden_size=args.hidden_size, num_layers=args.layers
    )
    prep_s = time.perf_counter() - t0
    model = EmbeddingModel.from_config(tiny_model_config("qwen2_vl", folder, dtype=dtype)).to(args.device)
    params = sum(p.numel() for p in model.parameters())
    positions = {"real": 0, "all": 0, "batches": 0}
    encode_batch = model.encode

    def counting_encode(inputs):  # the padding the model really computes
        mask = inputs["attention_mask"]
        positions["real"] += int(mask.sum())
        positions["all"] += mask.numel()
        positions["batches"] += 1
        return encode_batch(inputs)

    model.encode = counting_encode

    def run(
        out: str, workers: int | None = None, cache: str = "cache", batch_tokens: int | None = None
    ) -> tuple[EvalStats, float, dict]:
        cfg = EvalConfig(
            data_dir=str(data),
            output_dir=str(work / out),
            cache_dir=str(work / cache),
            batch_size=args.batch_size,
            batch_tokens=batch_tokens,
            num_workers=args.num_workers if workers is None else workers,
            skip_missing=True,  # a few synthetic datasets: a partial run
        )
        stats = EvalStats()
        positions.update(real=0, all=0, batches=0)
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        summary = evaluate_model(model, cfg, stats=stats)
        stats.padded_share = 1 - positions["real"] / max(positions["all"], 1)
        stats.batches = positions["batches"]
        return stats, time.perf_counter() - start, summary

    from vlm2vec.encoding import loader

    def today_run(out: str, cache: str, batch_tokens: int | None = None) -> tuple[EvalStats, float, dict]:
        new_settings = loader.PREFETCH_FACTOR, loader.PIN_MEMORY
        loader.PREFETCH_FACTOR, loader.PIN_MEMORY = 2, False  # torch's default prefetch, pageable memory
        try:
            return run(out, args.today_workers, cache=cache, batch_tokens=batch_tokens)
        finally:
            loader.PREFETCH_FACTOR, loader.PIN_MEMORY = new_settings

    configs = {"cold": lambda: run("cold")}
    if args.compare:
        configs["today"] = lambda: today_run("today", "cache_today")
    if args.batch_tokens:
        configs["tokens"] = lambda: run("tokens", cache="cache_tokens", batch_tokens=args.batch_tokens)
        if args.compare:  # the batch layout alone: today's loader, token-budget batches
            configs["tokens_today"] = lambda: today_run(
                "tokens_today", "cache_tokens_today", args.batch_tokens
            )
    best: dict[str, tuple[EvalStats, float, dict]] = {}
    for _ in range(args.repeats):  # the configurations alternate; each keeps its fastest cold run
        for name, go in configs.items():
            for stale in (name, f"cache_{name}" if name != "cold" else "cache"):
                shutil.rmtree(work / stale, ignore_errors=True)
            got = go()
            if name not in best or got[0].encode_seconds < best[name][0].encode_seconds:
                best[name] = got
    cold, cold_s, summary = best["cold"]
    warm, warm_s, _ = run("warm")
    today, today_s, _ = best.get("today", (None, 0.0, None))
    tokens, tokens_s, tokens_summary = best.get("tokens", (None, 0.0, None))
    layout = best.get("tokens_today", (None,))[0]
    result = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "dtype": dtype,
        "params": params,
        "hidden_size": args.hidden_size,
        "layers": args.layers,
        "datasets": len(KINDS),
        "queries_per_dataset": args.queries,
        "candidates_per_query": args.candidates,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "naive_slots": cold.naive_slots,
        "distinct_items": cold.distinct_items,
        "items_encoded": cold.items_encoded,
        "dedup_factor": round(cold.naive_slots / max(cold.items_encoded, 1), 2),
        "encode_s": round(cold.encode_seconds, 3),
        "items_per_s": round(cold.items_encoded / max(cold.encode_seconds, 1e-9), 1),
        "padded_share": round(cold.padded_share, 3),
        "batches": cold.batches,
        "naive_estimate_s": round(cold.naive_slots / max(cold.items_encoded, 1) * cold.encode_seconds, 2),
        "cold_s": round(cold_s, 3),
        "warm_items_encoded": warm.items_encoded,
        "warm_s": round(warm_s, 3),
        "prep_s": round(prep_s, 2),
        "overall_precision@1": summary["overall"],
    }
    result["repeats"] = args.repeats
    if today is not None:
        today_rate = today.items_encoded / max(today.encode_seconds, 1e-9)
        result["today"] = {
            "num_workers": args.today_workers,
            "items_per_s": round(today_rate, 1),
            "encode_s": round(today.encode_seconds, 3),
            "cold_s": round(today_s, 3),
            "padded_share": round(today.padded_share, 3),
            "batches": today.batches,
        }
        result["new_over_today"] = {
            "items_per_s": round(result["items_per_s"] / max(today_rate, 1e-9), 3),
            "encode_time": round(cold.encode_seconds / max(today.encode_seconds, 1e-9), 3),
        }
    if tokens is not None:
        tokens_rate = tokens.items_encoded / max(tokens.encode_seconds, 1e-9)
        waits = [t["input_wait"] for t in tokens.throughput.values() if t.get("input_wait") is not None]
        result["tokens"] = {
            "batch_tokens": args.batch_tokens,
            "num_workers": args.num_workers,
            "items_per_s": round(tokens_rate, 1),
            "encode_s": round(tokens.encode_seconds, 3),
            "cold_s": round(tokens_s, 3),
            "padded_share": round(tokens.padded_share, 3),
            "batches": tokens.batches,
            "input_wait_mean": round(sum(waits) / len(waits), 3) if waits else None,
            "overall_precision@1": tokens_summary["overall"],
        }
        if today is not None:
            result["tokens_over_today"] = {
                "items_per_s": round(tokens_rate / max(today_rate, 1e-9), 3),
                "encode_time": round(tokens.encode_seconds / max(today.encode_seconds, 1e-9), 3),
            }
        if layout is not None:
            layout_rate = layout.items_encoded / max(layout.encode_seconds, 1e-9)
            result["tokens_today_workers"] = {
                "num_workers": args.today_workers,
                "items_per_s": round(layout_rate, 1),
                "padded_share": round(layout.padded_share, 3),
                "batches": layout.batches,
                "over_today_items_per_s": round(layout_rate / max(today_rate, 1e-9), 3),
            }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
