"""Worker for the multi-process MMEB-V2 test: `torchrun --nproc_per_node N v2_eval_worker.py ...`.

Evaluates the fake encoder on the synthetic V2 slice with accelerate's process state over gloo; the
main process writes the usual outputs and every rank dumps the summary it returned.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from ending import run_and_exit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for eval_fakes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from accelerate import PartialState

    from eval_fakes import FakeEncoder
    from vlm2vec.config import EvalConfig
    from vlm2vec.evaluation import evaluate_model

    state = PartialState(cpu=True)
    model = FakeEncoder()
    cfg = EvalConfig(
        benchmark="mmeb_v2",
        v2_root=args.root,
        output_dir=args.out,
        batch_size=2,
        cache_chunk_items=2,
        skip_missing=True,
    )
    summary = evaluate_model(model, cfg, state=state)
    report = {"summary": summary, "rows_encoded": model.rows_encoded, "num_processes": state.num_processes}
    Path(args.out, f"rank{state.process_index}.json").write_text(json.dumps(report, default=str))


if __name__ == "__main__":
    run_and_exit(main)
