"""Train an embedding model: `python train.py --config configs/train/demo.yaml [--train.lr=1e-4 ...] [--resume]`.

Distributed: `accelerate launch --config_file configs/accelerate/multi_gpu.yaml train.py --config ...`
(or torchrun). See docs/training.md.
"""

import sys

from vlm2vec.config import parse_cli
from vlm2vec.training import run

if __name__ == "__main__":
    cfg, _ = parse_cli(sys.argv[1:])
    run(cfg)
