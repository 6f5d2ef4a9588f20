"""Offline test kit: tiny models of the real architectures, in-process tokenizers, synthetic data.

Used by the test-suite and the CPU demo; nothing here downloads anything.
"""

from .demo_assets import prepare_demo_assets
from .grad_order import assert_same_module_trace, gradient_ready_order, module_trace
from .gradcache_reference import gradcache_plan, reps_in_row_order
from .synthetic import (
    DEFAULT_EVAL_DATASETS,
    DEFAULT_TRAIN_SUBSETS,
    KIND_BY_META_TASK,
    MMEB_EVAL_KINDS,
    MMEB_TRAIN_KINDS,
    write_synthetic_mmeb_eval,
    write_synthetic_mmeb_train,
)
from .tiny import CORPUS, TINY_BUILDERS, make_tiny_checkpoint, tiny_model_config, train_byte_level_tokenizer

__all__ = [
    "CORPUS",
    "DEFAULT_EVAL_DATASETS",
    "DEFAULT_TRAIN_SUBSETS",
    "KIND_BY_META_TASK",
    "MMEB_EVAL_KINDS",
    "MMEB_TRAIN_KINDS",
    "TINY_BUILDERS",
    "assert_same_module_trace",
    "gradcache_plan",
    "gradient_ready_order",
    "make_tiny_checkpoint",
    "module_trace",
    "prepare_demo_assets",
    "reps_in_row_order",
    "tiny_model_config",
    "train_byte_level_tokenizer",
    "write_synthetic_mmeb_eval",
    "write_synthetic_mmeb_train",
]
