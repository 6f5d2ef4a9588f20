"""Offline test kit: tiny models of the real architectures, in-process tokenizers, synthetic data.

Used by the test-suite and the CPU demo; nothing here downloads anything.
"""

from .tiny import CORPUS, TINY_BUILDERS, make_tiny_checkpoint, tiny_model_config, train_byte_level_tokenizer

__all__ = ["CORPUS", "TINY_BUILDERS", "make_tiny_checkpoint", "tiny_model_config", "train_byte_level_tokenizer"]
