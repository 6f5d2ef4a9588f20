"""Evaluate an embedding model on MMEB: `python evaluate.py --config configs/eval/mmeb.yaml [--model.path=...]
[--eval.data_dir=...] [--eval.meta_tasks=[VQA]]`.

Several processes: `torchrun --nproc_per_node N evaluate.py ...` (or accelerate launch). See
docs/evaluation.md.
"""

import sys

from vlm2vec.config import parse_cli
from vlm2vec.evaluation import run_evaluation

if __name__ == "__main__":
    cfg, _ = parse_cli(sys.argv[1:])
    run_evaluation(cfg)
