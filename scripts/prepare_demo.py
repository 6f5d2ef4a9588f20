"""Write the CPU demo's tiny model, synthetic training data and held-out eval data where the demo
config points (nothing is overwritten). train.py does the same on first use (train.prepare_demo).

    python scripts/prepare_demo.py [--config configs/train/demo.yaml] [--model.path=...]
"""

import sys

from vlm2vec.config import parse_cli
from vlm2vec.training.demo import prepare_demo_assets

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a == "--config" or a.startswith("--config=") for a in argv):
        argv = ["--config", "configs/train/demo.yaml", *argv]
    cfg, _ = parse_cli(argv)
    written = prepare_demo_assets(cfg)
    print("\n".join(f"wrote {p}" for p in written) or "demo assets already present")
