"""Hard negatives on the CPU demo: in-batch negatives only vs mined negatives, same steps and seed.

1. trains the tiny Qwen2-VL of configs/train/demo.yaml with in-batch negatives only;
2. mines `--negatives` hard negatives per training query with that model (`vlm2vec.corpus.run_mine`:
   exact top-k, false-negative filters, margin);
3. trains the same initial model again, same steps, seed and batch, with the mined negatives
   (read by train.py from the MMEB-train layout the miner wrote);
4. evaluates both on the held-out synthetic MMEB-eval folder and prints both Precision@1 tables.

    python scripts/demo_hard_negatives.py [--negatives 3] [--train.max_steps=320 ...]

Everything goes under .demo/hard_negatives/ (run folders are replaced on every call).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--negatives", type=int, default=3, help="mined negatives per query")
    parser.add_argument("--top-k", type=int, default=30, help="candidates retrieved per query")
    parser.add_argument("--margin", type=float, default=0.0, help="drop candidates above positive + margin")
    parser.add_argument(
        "--reuse-baseline",
        action="store_true",
        help="keep an earlier in-batch run of the same config (skip step 1)",
    )
    args, overrides = parser.parse_known_args(argv)
    os.chdir(ROOT)  # the demo config uses paths relative to the repository

    from vlm2vec.training.demo import prepare_demo_assets

    from vlm2vec import EmbeddingModel
    from vlm2vec.config import load_config
    from vlm2vec.corpus.mine import run_mine
    from vlm2vec.evaluation import evaluate_model, format_table
    from vlm2vec.training import train

    cfg = load_config(ROOT / "configs/train/demo.yaml", ["--train.save_every=0", *overrides])
    t0 = time.time()
    for path in prepare_demo_assets(cfg):
        print(f"[hard negatives] wrote {path}")
    base = Path(".demo/hard_negatives")
    reuse = args.reuse_baseline and (base / "inbatch" / "final" / "vlm2vec.json").is_file()
    for folder in ("mined-run", "mined", "eval-mined") + (() if reuse else ("inbatch", "eval-inbatch")):
        shutil.rmtree(base / folder, ignore_errors=True)

    def evaluate(model_dir: Path, out: str) -> dict:
        model = EmbeddingModel.from_pretrained(model_dir, max_length=cfg.model.max_length)
        return evaluate_model(model, replace(cfg.eval, output_dir=str(base / out), batch_size=32))

    steps = cfg.train.max_steps
    print(f"\n[hard negatives] 1/4 training with in-batch negatives only ({steps} steps)")
    if reuse:
        print(f"[hard negatives] reusing {base / 'inbatch' / 'final'} (--reuse-baseline)")
        plain_final = base / "inbatch" / "final"
    else:
        plain_final = train(
            replace(cfg, train=replace(cfg.train, output_dir=str(base / "inbatch")))
        ).final_dir

    print(f"\n[hard negatives] 2/4 mining {args.negatives} negatives per query with the in-batch model")
    mine_cfg = replace(
        cfg,
        model=replace(cfg.model, path=str(plain_final)),
        mine=replace(
            cfg.mine,
            output_dir=str(base / "mined"),
            top_k=args.top_k,
            num_negatives=args.negatives,
            margin=args.margin,
        ),
        embed=replace(cfg.embed, batch_size=64),
    )
    stats = run_mine(mine_cfg)

    print(f"\n[hard negatives] 3/4 training with {args.negatives} mined negatives per query ({steps} steps)")
    mined_data = replace(
        cfg.data,
        mmeb_train_dir=str(base / "mined" / "train"),
        image_root=cfg.data.image_root or cfg.data.mmeb_train_dir,
        num_hard_negatives=args.negatives,
    )
    mined = train(
        replace(
            cfg,
            data=mined_data,
            train=replace(cfg.train, output_dir=str(base / "mined-run"), hard_negatives=True),
        )
    )

    print("\n[hard negatives] 4/4 evaluating both on the held-out synthetic MMEB-eval folder")
    before = evaluate(plain_final, "eval-inbatch")
    after = evaluate(mined.final_dir, "eval-mined")
    print("\n== in-batch negatives only ==")
    print(format_table(before))
    print("\n== with mined hard negatives ==")
    print(format_table(after))
    print(f"\nPrecision@1 (%) after {steps} steps, seed {cfg.train.seed}   in-batch only -> mined")
    for name, row in after["datasets"].items():
        was = before["datasets"][name]["precision@1"]
        print(f"  {name:<16} {was:9.1f} -> {row['precision@1']:5.1f}")
    print(f"  {'overall':<16} {before['overall']:9.1f} -> {after['overall']:5.1f}")
    print(
        f"\n[hard negatives] mined {stats.rows_written} of {stats.queries} rows (report: {base}/mined/report.md); "
        f"done in {time.time() - t0:.0f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
