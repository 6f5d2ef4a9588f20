"""What the CPU demo needs and the test-suite reuses: tiny models of the real architectures with
in-process tokenizers, and synthetic data in the real MMEB layouts; nothing here downloads anything.
Helpers only tests use live under tests/."""

from .demo_assets import prepare_demo_assets
from .synthetic import (
    DEFAULT_EVAL_DATASETS,
    DEFAULT_TRAIN_SUBSETS,
    KIND_BY_META_TASK,
    MMEB_EVAL_KINDS,
    MMEB_TRAIN_KINDS,
    write_synthetic_mmeb_eval,
    write_synthetic_mmeb_train,
)
from .tiny import make_tiny_checkpoint, tiny_model_config
from .vocabulary import CORPUS, train_byte_level_tokenizer

__all__ = [
    "CORPUS",
    "DEFAULT_EVAL_DATASETS",
    "DEFAULT_TRAIN_SUBSETS",
    "KIND_BY_META_TASK",
    "MMEB_EVAL_KINDS",
    "MMEB_TRAIN_KINDS",
    "make_tiny_checkpoint",
    "prepare_demo_assets",
    "tiny_model_config",
    "train_byte_level_tokenizer",
    "write_synthetic_mmeb_eval",
    "write_synthetic_mmeb_train",
]
