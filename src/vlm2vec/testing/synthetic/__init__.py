"""Synthetic MMEB-train and MMEB-eval folders with learnable content, for tests and the CPU demo.

The folders have the real layouts and columns (REFERENCE.md §4), so the real readers are exercised:

- train: `<root>/<Subset>/<split>-00000-of-00001.parquet`, images under `<root>/images/<Subset>/`,
  paths relative to `<root>` (the default image root), e.g. `images/ImageNet_1K/img_00012.png`.
- eval: `<root>/<Dataset>/test-00000-of-00001.parquet`, images under `<root>/images/<Dataset>/`,
  paths relative to `<root>/images` (as in MMEB-eval's images.zip), e.g. `ImageNet-1K/q_00003.png`.

Content comes from `images`: coloured shapes on grey backgrounds. A class name is the colour
and shape of the main (largest) object, a caption lists the objects, a question asks for a colour, a
shape, a count or the written word, and a grounding target is the crop of the named object. Every
dataset draws from its own random stream (seeded by seed, split side and name), so adding a dataset
changes no other, and train and eval never share images while sharing one vocabulary.
"""

from .eval import EVAL_COLUMNS, write_synthetic_mmeb_eval
from .kinds import (
    DEFAULT_EVAL_DATASETS,
    DEFAULT_TRAIN_SUBSETS,
    KIND_BY_META_TASK,
    KINDS,
    MMEB_EVAL_KINDS,
    MMEB_TRAIN_KINDS,
)
from .train import TRAIN_COLUMNS, TRAIN_SPLITS, write_synthetic_mmeb_train

__all__ = [
    "DEFAULT_EVAL_DATASETS",
    "DEFAULT_TRAIN_SUBSETS",
    "EVAL_COLUMNS",
    "KINDS",
    "KIND_BY_META_TASK",
    "MMEB_EVAL_KINDS",
    "MMEB_TRAIN_KINDS",
    "TRAIN_COLUMNS",
    "TRAIN_SPLITS",
    "write_synthetic_mmeb_eval",
    "write_synthetic_mmeb_train",
]
