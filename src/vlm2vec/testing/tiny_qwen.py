"""Tiny Qwen2-VL, Qwen2.5-VL and Qwen3-VL folders in the official layout (config, safetensors, a
byte-level tokenizer with the Qwen special tokens, the image processor), for offline tests and the demo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .vocabulary import train_byte_level_tokenizer

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def _qwen_vocabulary() -> tuple[Any, dict[str, int], dict[str, int]]:
    """The in-process tokenizer, its vocabulary and the media token ids every Qwen-VL config takes."""
    tokenizer = train_byte_level_tokenizer(QWEN_SPECIAL_TOKENS)
    vocab = tokenizer.get_vocab()
    ids = dict(
        image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
    )
    return tokenizer, vocab, ids


def _mrope_section(hidden_size: int, heads: int) -> list[int]:
    """M-RoPE's (temporal, height, width) split of half a head, summing to head_dim / 2."""
    half = hidden_size // heads // 2
    return [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]


def _save_tiny(
    folder: Path, model_class: Any, config: Any, tokenizer: Any, seed: int, patch: int, max_pixels: int
) -> Path:
    """Build the model from `config` under `seed` and write it with its tokenizer and image processor."""
    from transformers import Qwen2VLImageProcessorPil

    torch.manual_seed(seed)
    model = model_class(config)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    Qwen2VLImageProcessorPil(
        min_pixels=(patch * 4) ** 2,
        max_pixels=max_pixels,
        merge_size=2,
        patch_size=patch,
        temporal_patch_size=2,
    ).save_pretrained(folder)
    return folder


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

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer, vocab, ids = _qwen_vocabulary()
    heads = 4
    mrope = _mrope_section(hidden_size, heads)
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
    return _save_tiny(folder, cls, config, tokenizer, seed, patch=14, max_pixels=max_pixels)


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

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer, vocab, ids = _qwen_vocabulary()
    heads = 4
    mrope = _mrope_section(hidden_size, heads)
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
    config = transformers.Qwen3VLConfig(text_config=text_config, vision_config=vision, **ids)
    return _save_tiny(
        folder, transformers.Qwen3VLForConditionalGeneration, config, tokenizer, seed, 16, max_pixels
    )


#: backbone name -> function(folder, **overrides) writing its tiny checkpoint folder
TINY_BUILDERS: dict[str, Callable[..., Path]] = {
    "qwen2_vl": lambda folder, **kw: write_tiny_qwen2vl(folder, variant="qwen2_vl", **kw),
    "qwen2_5_vl": lambda folder, **kw: write_tiny_qwen2vl(folder, variant="qwen2_5_vl", **kw),
    "qwen3_vl": write_tiny_qwen3vl,
}
