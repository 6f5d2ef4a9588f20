"""Worker for the multi-process evaluation test: `torchrun --nproc_per_node N eval_worker.py ...`.

Evaluates a tiny Qwen2-VL (or the fake encoder) on a synthetic folder with accelerate's process state
over gloo; the main process writes the usual outputs and every rank dumps the summary it returned.
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch
from ending import run_and_exit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for eval_fakes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", required=True, help="'fake' or a tiny qwen2_vl folder")
    parser.add_argument("--batch-size", type=int, default=3)
    parser.add_argument(
        "--batch-tokens", type=int, default=None, help="also evaluate with token batches into <out>/tokens"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # same kernels whatever the world size

    from accelerate import PartialState

    from vlm2vec.config import EvalConfig
    from vlm2vec.evaluation import evaluate_model

    state = PartialState(cpu=True)
    if args.model == "fake":
        from eval_fakes import FakeEncoder

        model = FakeEncoder()
    else:
        from vlm2vec.model import EmbeddingModel
        from vlm2vec.testing import tiny_model_config

        model = EmbeddingModel.from_config(tiny_model_config("qwen2_vl", args.model))
    rows = []
    encode = model.encode
    model.encode = lambda inputs: rows.append(int(inputs["input_ids"].shape[0])) or encode(inputs)
    cfg = EvalConfig(
        data_dir=args.data,
        output_dir=args.out,
        batch_size=args.batch_size,
        cache_chunk_items=4,
        skip_missing=True,  # a few synthetic datasets: a partial run
    )
    summary = evaluate_model(model, cfg, state=state)
    report = {"summary": summary, "rows_encoded": sum(rows), "num_processes": state.num_processes}
    if args.batch_tokens is not None:
        tokens = dataclasses.replace(
            cfg, output_dir=str(Path(args.out, "tokens")), batch_tokens=args.batch_tokens
        )
        report["tokens_summary"] = evaluate_model(model, tokens, state=state)
    Path(args.out, f"rank{state.process_index}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    run_and_exit(main)
