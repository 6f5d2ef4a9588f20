"""vlm2vec: vision-language models as multimodal embedding models (contrastive training, MMEB eval).

from vlm2vec import EmbeddingModel
model = EmbeddingModel.from_pretrained("path/to/saved_or_base_model")
reps = model.embed(["<|image_1|> Represent the given image.", "a red circle"], [[image], []])
"""

from .config import Config, ConfigError, DataConfig, EvalConfig, ModelConfig, TrainConfig, load_config
from .model import EmbeddingModel, last_token_pool, load_processor

__version__ = "0.1.0"

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
