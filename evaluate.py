"""Evaluate an embedding model on MMEB: `python evaluate.py --config configs/eval/mmeb.yaml [--model.path=...]
[--eval.data_dir=...] [--eval.meta_tasks=[VQA]]`.

The same as `vlm2vec eval ...`; `--help` lists every config key. Several processes: `torchrun
--nproc_per_node N evaluate.py ...` (or accelerate launch). See docs/evaluation.md.
"""

import sys

from vlm2vec.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]], prog="evaluate.py"))
