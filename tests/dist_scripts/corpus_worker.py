"""Worker for the multi-process corpus test: `torchrun --nproc_per_node N corpus_worker.py MODEL DATA OUT`.

Runs `run_mine` (embedding of the training queries and targets, sharded over the processes, then
mining on the main process) with the sample strategy; every rank records how many items it encoded.
"""

import json
import os
import sys
from pathlib import Path

import torch
from ending import run_and_exit


def main() -> None:
    model_dir, data, out = sys.argv[1:4]
    torch.set_num_threads(1)  # same kernels whatever the world size

    from vlm2vec.config import load_config
    from vlm2vec.corpus.mine import run_mine
    from vlm2vec.model import EmbeddingModel

    cfg = load_config(
        None,
        [f"--model.path={model_dir}", "--model.backbone=qwen2_vl", f"--data.mmeb_train_dir={data}",
         f"--mine.output_dir={out}", "--mine.strategy=sample", "--mine.top_k=8", "--mine.num_negatives=2",
         "--mine.margin=0.05", "--mine.keep_short=true", "--embed.batch_size=3", "--embed.chunk_items=3"],
    )  # fmt: skip
    encoded = []
    encode = EmbeddingModel.encode
    EmbeddingModel.encode = lambda self, x: encoded.append(len(x["input_ids"])) or encode(self, x)
    run_mine(cfg)
    rank = int(os.environ.get("RANK", "0"))
    Path(out, f"rank{rank}.json").write_text(json.dumps({"encoded": sum(encoded)}))


if __name__ == "__main__":
    run_and_exit(main)
