"""Evaluate an embedding model on MMEB: `python evaluate.py --config configs/eval/mmeb.yaml [--model.path=...]
[--eval.data_dir=...] [--eval.meta_tasks=[VQA]]`.

The same as `vlm2vec eval ...`; `--help` lists every config key; `evaluate.py --compare RUN_A RUN_B`
is `vlm2vec compare RUN_A RUN_B`. Several processes: `torchrun
--nproc_per_node N evaluate.py ...` (or accelerate launch). See docs/evaluation.md.
"""

import sys

from vlm2vec.commands import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--compare"]:  # evaluate.py --compare RUN_A RUN_B [...] = vlm2vec compare ...
        sys.exit(main(["compare", *args[1:]]))
    sys.exit(main(["eval", *args], prog="evaluate.py"))
