"""The one-command demo (`make demo`): synthetic data, a tiny model, evaluate, train, evaluate again.

Everything runs on the CPU from local files made here (nothing is downloaded):
1. writes a tiny randomly initialised Qwen2-VL, synthetic MMEB-train subsets, a synthetic VLM2Vec-V2
   training mix in the published layouts (ColPali and VisRAG pages, LLaVA-Hound videos) and a
   held-out MMEB-eval folder under `.demo/` (configs/train/demo_v2.yaml says where);
2. evaluates the untrained model on the held-out folder;
3. trains it with `configs/train/demo_v2.yaml` (the same code path as `train.py`);
4. evaluates the trained model and prints both tables and the per-dataset change;
5. evaluates both models on a held-out synthetic MMEB-V2 slice (its 36 image tasks from the same
   held-out folder, plus 11 video and 4 visual-document tasks written in the published layouts under
   `.demo/mmeb-v2`, the classification, retrieval and document ones showing learnable scenes), and
   prints the 78-task report of the trained model, marked partial, and the change per modality.

    python scripts/demo.py [--train.max_steps=100 ...]     # any train-config override
"""

from __future__ import annotations

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


def _written_by_demo(folder: str | os.PathLike) -> bool:
    from vlm2vec.outputs import read_owner

    return (read_owner(folder) or {}).get("program") == Path(__file__).name


def _start_afresh(run_dir: Path) -> None:
    """Remove the run folder of an earlier demo; refuse any other non-empty folder (never deleted)."""
    from vlm2vec.outputs import OutputOwnedError

    if _written_by_demo(run_dir):
        shutil.rmtree(run_dir)
    elif run_dir.is_dir() and any(run_dir.iterdir()):
        raise OutputOwnedError(
            f"train.output_dir {run_dir} holds a run the demo did not write: pass another --train.output_dir, or remove it"
        )


def main(argv: list[str]) -> int:
    os.chdir(ROOT)  # the demo config uses paths relative to the repository
    from vlm2vec.commands.running import name_deepspeed_accelerator

    name_deepspeed_accelerator()
    from vlm2vec import EmbeddingModel
    from vlm2vec.commands.train import run
    from vlm2vec.config import load_config
    from vlm2vec.evaluation import evaluate_model, format_table
    from vlm2vec.evaluation.v2_reports import format_v2_table
    from vlm2vec.testing import prepare_demo_assets
    from vlm2vec.testing.demo_assets import prepare_demo_v2_slice

    cfg = load_config(ROOT / "configs/train/demo_v2.yaml", argv)
    t0 = time.time()
    v2_root = Path(cfg.eval.data_dir).parent / "mmeb-v2"
    for path in [*prepare_demo_assets(cfg), prepare_demo_v2_slice(v2_root)]:
        if path is not None:
            print(f"[demo] wrote {path}")

    def evaluate(model_dir: str, out: str, **v2) -> dict:
        model = EmbeddingModel.from_pretrained(model_dir, max_length=cfg.model.max_length)
        eval_cfg = replace(cfg.eval, **{"output_dir": out, "batch_size": 32, **v2})
        return evaluate_model(model, eval_cfg, overwrite=_written_by_demo(out))  # a folder of an earlier demo

    print("\n[demo] 1/3 evaluating the untrained tiny model on the held-out synthetic MMEB-eval folder")
    before = evaluate(cfg.model.path, str(Path(cfg.train.output_dir).parent / "eval-untrained"))
    print(format_table(before, per_dataset=False))

    print(f"\n[demo] 2/3 training ({cfg.train.max_steps} steps, batch {cfg.train.per_device_batch_size})")
    _start_afresh(Path(cfg.train.output_dir))
    result = run(cfg)

    print("\n[demo] 3/3 evaluating the trained model")
    after = evaluate(str(result.final_dir), cfg.eval.output_dir)
    print(format_table(after))

    print("\nPrecision@1 (%)           untrained -> trained")
    for name, row in after["datasets"].items():
        was = before["datasets"].get(name, {}).get("precision@1")
        print(f"  {name:<24} {was:5.1f} -> {row['precision@1']:5.1f}")
    cov = after["coverage"]["overall"]
    label = f"overall ({cov['datasets']}/{cov['of']}{', partial' if cov['partial'] else ''})"
    print(f"  {label:<24} {before['overall']:5.1f} -> {after['overall']:5.1f}")
    print("\n[demo] 4/4 both models on the synthetic MMEB-V2 slice (image + video + visual documents)")
    v2 = dict(benchmark="mmeb_v2", v2_root=str(v2_root), batch_size=8)
    runs = Path(cfg.train.output_dir).parent
    v2_before = evaluate(cfg.model.path, str(runs / "eval-v2-untrained"), **v2)
    v2_after = evaluate(str(result.final_dir), str(runs / "eval-v2"), **v2)
    print(format_v2_table(v2_after))
    print("\nMMEB-V2 means (%)         untrained -> trained")
    for modality in ("image", "video", "visdoc"):
        was, now = v2_before["modalities"][modality], v2_after["modalities"][modality]
        label = f"{modality} ({now['n']}/{now['of']})"
        print(f"  {label:<24} {was['value']:5.1f} -> {now['value']:5.1f}")
    print(
        f"\n[demo] done in {time.time() - t0:.0f}s; reports in {cfg.eval.output_dir}/ (summary.md, meta_tasks.png)"
        f" and {runs / 'eval-v2'}/"
    )
    return 0


if __name__ == "__main__":
    from vlm2vec.commands import run_command

    sys.exit(run_command(lambda: main(sys.argv[1:])))
