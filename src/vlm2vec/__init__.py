"""vlm2vec: vision-language models as multimodal embedding models (contrastive training, MMEB eval).

from vlm2vec import EmbeddingModel
model = EmbeddingModel.from_pretrained("path/to/saved_or_base_model")
reps = model.embed(["<|image_1|> Represent the given image.", "a red circle"], [[image], []])
"""

from .config import Config, ConfigError, DataConfig, EvalConfig, ModelConfig, TrainConfig, load_config

__version__ = "0.1.0"

_FROM_MODEL = ("EmbeddingModel", "last_token_pool", "load_processor")


def __getattr__(name: str):
    """The model API is imported on first use: `import vlm2vec.commands` (e.g. for `--help`) must not
    import torch."""
    if name in _FROM_MODEL:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module 'vlm2vec' has no attribute {name!r}")


__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "EmbeddingModel",
    "EvalConfig",
    "ModelConfig",
    "TrainConfig",
    "last_token_pool",
    "load_config",
    "load_processor",
]
