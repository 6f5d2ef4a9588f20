"""Create the demo's tiny model and synthetic data where a config points and nothing exists yet.

Used by `scripts/prepare_demo.py` and `scripts/demo.py` (`make demo`; the demo also trains on a
synthetic V2 mix of document pages and videos in their published layouts and evaluates on a held-out
synthetic MMEB-V2 slice, `prepare_demo_v2_slice`), never by the trainer: the
training loop knows nothing of the demo, so a mistyped `model.path` fails there instead of training
a fresh random model. Existing folders are left alone, so a second run reuses them.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from ..config import Config, ConfigError

logger = logging.getLogger(__name__)

#: rows per synthetic MMEB-train subset (fewer rows overfit: the tiny model then learns no transfer)
DEMO_TRAIN_ROWS = 1024
DEMO_EVAL_QUERIES = 40
DEMO_EVAL_CANDIDATES = 10
#: rows of each synthetic V2 document source and videos of the LLaVA-Hound files (captions and QA)
DEMO_V2_PAGES = 512
DEMO_V2_VIDEOS = 256
_V2_KEYS = (
    "colpali_train_dir",
    "visrag_indomain_dir",
    "llavahound_caption_file",
    "llavahound_qa_file",
    "llavahound_frames_dir",
)


def prepare_demo_assets(cfg: Config) -> list[Path]:
    """Write whatever of model.path, data.mmeb_train_dir and eval.data_dir is missing; returns what was written."""
    from .synthetic import MMEB_TRAIN_KINDS, write_synthetic_mmeb_eval, write_synthetic_mmeb_train
    from .tiny import make_tiny_checkpoint

    written = []
    if cfg.model.path and not (Path(cfg.model.path) / "config.json").is_file():
        logger.info("demo: writing a tiny %s model to %s", cfg.model.backbone, cfg.model.path)
        written.append(make_tiny_checkpoint(cfg.model.backbone, cfg.model.path))
    train_dir = cfg.data.mmeb_train_dir
    if train_dir and not (Path(train_dir).is_dir() and any(Path(train_dir).glob("*/*.parquet"))):
        logger.info("demo: writing synthetic MMEB-train data to %s", train_dir)
        # the configured subsets (None: the synthetic default five)
        unknown = sorted(set(cfg.data.subsets) - set(MMEB_TRAIN_KINDS))
        if unknown:
            raise ConfigError(
                f"data.subsets: no synthetic demo data for {unknown}; MMEB-train subsets: {sorted(MMEB_TRAIN_KINDS)}"
            )
        subsets = {name: MMEB_TRAIN_KINDS[name] for name in cfg.data.subsets} or None
        written.append(
            write_synthetic_mmeb_train(
                train_dir, subsets=subsets, rows_per_subset=DEMO_TRAIN_ROWS, splits=[cfg.data.split], seed=0
            )
        )
    written += _prepare_v2_train(cfg)
    eval_dir = cfg.eval.data_dir
    if eval_dir and not (Path(eval_dir).is_dir() and any(Path(eval_dir).glob("*/*.parquet"))):
        logger.info("demo: writing held-out synthetic MMEB-eval data to %s", eval_dir)
        written.append(
            write_synthetic_mmeb_eval(
                eval_dir, num_queries=DEMO_EVAL_QUERIES, num_candidates=DEMO_EVAL_CANDIDATES, seed=1
            )
        )
    return written


def _prepare_v2_train(cfg: Config) -> list[Path]:
    """The synthetic V2 training sources under the folder holding `data.colpali_train_dir`."""
    from .synthetic_v2_train import write_synthetic_v2_train

    if not cfg.data.colpali_train_dir or Path(cfg.data.colpali_train_dir).is_dir():
        return []
    root = Path(cfg.data.colpali_train_dir).parent
    logger.info("demo: writing the synthetic V2 training sources to %s", root)
    data = write_synthetic_v2_train(root, rows=DEMO_V2_PAGES, videos=DEMO_V2_VIDEOS, seed=0)
    for key in _V2_KEYS:
        if getattr(cfg.data, key) and Path(getattr(cfg.data, key)) != getattr(data, key):
            raise ConfigError(f"data.{key}: the demo writes it to {getattr(data, key)}", key=f"data.{key}")
    return [root]


def prepare_demo_v2_slice(root: str | Path) -> Path | None:
    """Write the synthetic MMEB-V2 slice (video and visual-document tasks in the published layouts,
    with learnable scenes) to `root` unless it is there; returns `root` when written."""
    from .synthetic_v2 import write_synthetic_v2

    root = Path(root)
    stamp, version = root / "demo-slice.json", {"scenes": True, "seed": 1}
    if (root / "video-tasks").is_dir() and (root / "visdoc-tasks").is_dir():
        if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == version:
            return None
        # a slice an earlier demo wrote in another version: its figures would not be this demo's
        logger.info("demo: %s holds an older demo slice; writing it again", root)
        shutil.rmtree(root)
    logger.info("demo: writing the synthetic MMEB-V2 slice to %s", root)
    written = write_synthetic_v2(root, scenes=True, seed=1)
    stamp.write_text(json.dumps(version), encoding="utf-8")
    return written
