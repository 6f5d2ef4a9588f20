"""Train an embedding model: `python train.py --config configs/train/demo.yaml [--train.lr=1e-4 ...] [--resume]`.

The same as `vlm2vec train ...`; `--help` lists every config key. Distributed: `accelerate launch
--config_file configs/accelerate/multi_gpu.yaml train.py --config ...` (or torchrun). See docs/training.md.
"""

import sys

from vlm2vec.commands import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]], prog="train.py"))
