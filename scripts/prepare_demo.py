"""Write the CPU demo's tiny model, synthetic training data and held-out eval data where the demo
config points (nothing is overwritten). Run it (or `make demo`) before
`python train.py --config configs/train/demo.yaml`: the trainer itself never creates a model.

    python scripts/prepare_demo.py [--config configs/train/demo.yaml] [--model.path=...]
"""

import sys

from vlm2vec.commands import parse_cli, run_command
from vlm2vec.testing import prepare_demo_assets


def main(argv: list[str]) -> None:
    if not any(a == "--config" or a.startswith("--config=") for a in argv):
        argv = ["--config", "configs/train/demo.yaml", *argv]
    cfg = parse_cli(argv).config
    written = prepare_demo_assets(cfg)
    print("\n".join(f"wrote {p}" for p in written) or "demo assets already present")


if __name__ == "__main__":
    sys.exit(run_command(lambda: main(sys.argv[1:])))
