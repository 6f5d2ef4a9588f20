"""MMEB-V2 evaluation throughput per modality on synthetic data: items/s and the input-wait share.

    python scripts/bench_v2.py --device cpu                                        # tiny Qwen2-VL
    python scripts/bench_v2.py --device cuda --dtype bfloat16 --hidden-size 1024 --layers 8 --num-workers 4

Writes the synthetic V2 slice of the test kit (11 video and 4 visual-document tasks in the published
layouts) and two synthetic image datasets, and a randomly initialised Qwen2-VL of the given size, then
runs `evaluate_model` with `eval.benchmark: mmeb_v2` cold (everything encoded). Prints one JSON object,
per modality (image, video, visdoc):
    tasks, items     tasks scored and distinct items encoded
    items_per_s      items / encoding time of the modality's tasks
    input_wait       share of the encoding time spent waiting for inputs (reading and decoding images,
                     frames and pages, and the processor) rather than in the forward pass
and `total_s` (the run's wall time). Until the backbones turn `Item.video` into model inputs, the
video figures count the frame selection and text only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--hidden-size", type=int, default=None, help="tiny model width (default: the kit's)")
    p.add_argument("--layers", type=int, default=None, help="tiny model depth (default: the kit's)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-workers", type=int, default=0)
    return p.parse_args()


def _model(args: argparse.Namespace, folder: Path):
    import torch

    from vlm2vec.model import EmbeddingModel
    from vlm2vec.testing import make_tiny_checkpoint, tiny_model_config

    sizes = {k: v for k, v in (("hidden_size", args.hidden_size), ("num_layers", args.layers)) if v}
    cfg = tiny_model_config("qwen2_vl", make_tiny_checkpoint("qwen2_vl", folder, **sizes), dtype=args.dtype)
    return EmbeddingModel.from_config(cfg).to(torch.device(args.device))


def _per_modality(summary: dict, throughput: dict) -> dict:
    out = {}
    for modality in ("image", "video", "visdoc"):
        names = [n for n, r in summary["datasets"].items() if r["modality"] == modality and n in throughput]
        items = sum(throughput[n].get("items", 0) for n in names)
        seconds = sum(throughput[n].get("seconds", 0.0) for n in names)
        wait = sum(throughput[n].get("input_wait", 0.0) * throughput[n].get("seconds", 0.0) for n in names)
        out[modality] = {
            "tasks": len(names),
            "items": items,
            "items_per_s": round(items / seconds, 1) if seconds else None,
            "input_wait": round(wait / seconds, 3) if seconds else None,
        }
    return out


def main() -> None:
    args = _args()
    from vlm2vec.config import EvalConfig
    from vlm2vec.evaluation import EvalStats, evaluate_model
    from vlm2vec.testing.synthetic import write_synthetic_mmeb_eval
    from vlm2vec.testing.synthetic_v2 import write_synthetic_v2

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        kinds = {"ImageNet-1K": "classification", "MSCOCO_t2i": "retrieval_t2i"}
        v1 = write_synthetic_mmeb_eval(base / "mmeb-eval", datasets=kinds, num_queries=20, num_candidates=10)
        cfg = EvalConfig(
            benchmark="mmeb_v2",
            v2_root=str(write_synthetic_v2(base / "v2")),
            data_dir=str(v1),
            output_dir=str(base / "out"),
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            skip_missing=True,
        )
        model = _model(args, base / "model")
        stats = EvalStats()
        start = time.perf_counter()
        summary = evaluate_model(model, cfg, stats=stats)
        total = time.perf_counter() - start
    result = {"device": args.device, "dtype": args.dtype, **_per_modality(summary, stats.throughput)}
    print(json.dumps({**result, "total_s": round(total, 1)}))


if __name__ == "__main__":
    main()
