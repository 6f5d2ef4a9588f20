"""Tiny randomly initialised checkpoints of the real architectures, written in the official layouts.

Tests and the demo cannot download weights, so they build a model folder here and then open it with
the real loading code (`EmbeddingModel.from_config`). Tokenizers are trained in-process on a small
corpus that covers the synthetic data's vocabulary, and carry each backbone's special tokens.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig

#: words the synthetic data uses, so the tiny tokenizers do not shred them into bytes
CORPUS = (
    "Represent the given image for classification . Represent the given image with the following question : "
    "Find an image that matches the given caption . Find a caption for the given image . Select the portion of "
    "the image that isolates the object labeled as what is in the image ? how many objects are there ? "
    "which color is the shape a an and of on with red green blue yellow purple orange white black gray pink "
    "brown cyan circle square triangle star cross diamond ring heart background striped checkered plain noisy "
    "left right top bottom center one two three four five small large picture photo text label object shape "
    "color answer question image caption query target document query: passage: 0 1 2 3 4 5 6 7 8 9 "
    "the quick brown fox jumps over the lazy dog A cat and a dog sun tree moon fish boat book car home key map cup"
)

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def train_byte_level_tokenizer(special_tokens: list[str], vocab_size: int = 400, corpus: str = CORPUS) -> Any:
    """A byte-level BPE tokenizer (GPT-2/Qwen style, adds no BOS) trained in-process."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([corpus] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=special_tokens[1:],
    )


def write_tiny_qwen2vl(
    folder: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
    variant: str = "qwen2_vl",
    max_pixels: int = 56 * 56 * 4,
) -> Path:
    """Write a tiny Qwen2-VL (or Qwen2.5-VL) folder: config, safetensors, tokenizer, image processor."""
    import transformers
    from transformers import Qwen2VLImageProcessorPil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_byte_level_tokenizer(QWEN_SPECIAL_TOKENS)
    vocab = tokenizer.get_vocab()
    heads = 4
    head_dim = hidden_size // heads
    half = head_dim // 2
    mrope = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    text_config = dict(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
        bos_token_id=vocab["<|endoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    ids = dict(
        image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
    )
    if variant == "qwen2_vl":
        vision = dict(
            depth=2,
            embed_dim=32,
            hidden_size=hidden_size,
            num_heads=2,
            mlp_ratio=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        )
        config = transformers.Qwen2VLConfig(text_config=text_config, vision_config=vision, **ids)
        cls = transformers.Qwen2VLForConditionalGeneration
    elif variant == "qwen2_5_vl":
        vision = dict(
            depth=2,
            hidden_size=32,
            out_hidden_size=hidden_size,
            num_heads=2,
            intermediate_size=64,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            fullatt_block_indexes=[1],
        )
        config = transformers.Qwen2_5_VLConfig(text_config=text_config, vision_config=vision, **ids)
        cls = transformers.Qwen2_5_VLForConditionalGeneration
    else:
        raise ValueError(f"unknown Qwen variant {variant!r}")
    torch.manual_seed(seed)
    model = cls(config)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    Qwen2VLImageProcessorPil(
        min_pixels=56 * 56, max_pixels=max_pixels, merge_size=2, patch_size=14, temporal_patch_size=2
    ).save_pretrained(folder)
    return folder


def write_tiny_qwen3vl(
    folder: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
    max_pixels: int = 64 * 64 * 4,
) -> Path:
    """Write a tiny Qwen3-VL folder (16-px patches, interleaved M-RoPE, one DeepStack layer) like the official one."""
    import transformers
    from transformers import Qwen2VLImageProcessorPil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_byte_level_tokenizer(QWEN_SPECIAL_TOKENS)
    vocab = tokenizer.get_vocab()
    heads = 4
    half = hidden_size // heads // 2
    mrope = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    text_config = dict(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=2,
        head_dim=hidden_size // heads,
        max_position_embeddings=4096,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": mrope,
            "mrope_interleaved": True,
        },
        pad_token_id=vocab["<|endoftext|>"],
    )
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=hidden_size,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=64,
        deepstack_visual_indexes=[0],
    )
    config = transformers.Qwen3VLConfig(
        text_config=text_config,
        vision_config=vision,
        image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = transformers.Qwen3VLForConditionalGeneration(config)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    Qwen2VLImageProcessorPil(
        min_pixels=64 * 64, max_pixels=max_pixels, merge_size=2, patch_size=16, temporal_patch_size=2
    ).save_pretrained(folder)
    return folder


def _write_tiny_llava_next(folder: str | Path, **kwargs: Any) -> Path:
    module = importlib.import_module("vlm2vec.testing.tiny_llava_next")
    return module.write_tiny_llava_next(folder, **kwargs)


def _write_tiny_phi3v(folder: str | Path, **kwargs: Any) -> Path:
    module = importlib.import_module("vlm2vec.testing.tiny_phi3v")
    return module.write_tiny_phi3v(folder, **kwargs)


#: backbone name -> function(folder, **overrides) writing a tiny checkpoint folder
TINY_BUILDERS: dict[str, Callable[..., Path]] = {
    "qwen2_vl": lambda folder, **kw: write_tiny_qwen2vl(folder, variant="qwen2_vl", **kw),
    "qwen2_5_vl": lambda folder, **kw: write_tiny_qwen2vl(folder, variant="qwen2_5_vl", **kw),
    "phi3_v": _write_tiny_phi3v,
    "qwen3_vl": write_tiny_qwen3vl,
    "llava_next": _write_tiny_llava_next,
}


def make_tiny_checkpoint(backbone: str, folder: str | Path, **overrides: Any) -> Path:
    """Write a tiny randomly initialised checkpoint of `backbone` into `folder` (official layout)."""
    if backbone not in TINY_BUILDERS:
        raise KeyError(f"no tiny builder for backbone '{backbone}'; have {sorted(TINY_BUILDERS)}")
    return TINY_BUILDERS[backbone](folder, **overrides)


def tiny_model_config(backbone: str, folder: str | Path, **overrides: Any) -> ModelConfig:
    """A ModelConfig that opens the tiny folder in fp32 with settings suited to tiny models."""
    cfg = ModelConfig(backbone=backbone, path=str(folder), dtype="float32", max_length=64)
    if backbone == "phi3_v":
        cfg.num_crops = 4
    if backbone == "llava_next":
        cfg.image_resolution = "native"  # tiny tiles: let anyres pick the grid from the image's own size
    for key, value in overrides.items():
        if not hasattr(cfg, key):
            raise KeyError(f"ModelConfig has no field '{key}'")
        setattr(cfg, key, value)
    return cfg
