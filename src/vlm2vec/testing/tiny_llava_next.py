"""A tiny LLaVA-NeXT (LLaVA-1.6 Mistral layout) folder in the llava-hf layout, for offline tests and the demo.

config.json (`model_type: llava_next`, CLIP vision tower, Mistral text model, anyres grid pinpoints),
safetensors, a byte-level tokenizer that adds BOS `<s>` and knows `<image>`, and the processor files
(`preprocessor_config.json`, `processor_config.json` with patch size, feature strategy and the CLS
token count), as `LlavaNextProcessor.save_pretrained` writes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .vocabulary import CORPUS

SPECIAL = ["<unk>", "<s>", "</s>", "<image>", "<pad>"]


def train_llava_tokenizer(vocab_size: int = 400) -> Any:
    """Byte-level BPE with a BOS post-processor (as the Llama/Mistral tokenizers add one) and `<image>`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS] * 4, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )


def write_tiny_llava_next(
    folder: str | Path, *, hidden_size: int = 64, num_layers: int = 2, seed: int = 0, tile: int = 28
) -> Path:
    """Write the tiny folder: 28-px tiles of 14-px patches, pinpoints up to 2x2 tiles."""
    import transformers
    from transformers import LlavaNextImageProcessorPil, LlavaNextProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_llava_tokenizer()
    vocab = tokenizer.get_vocab()
    pinpoints = [[tile, 2 * tile], [2 * tile, tile], [2 * tile, 2 * tile]]
    vision = transformers.CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=tile,
        patch_size=14,
        projection_dim=32,
    )
    text = transformers.MistralConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
    )
    config = transformers.LlavaNextConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=vocab["<image>"],
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = transformers.LlavaNextForConditionalGeneration(config)
    model.save_pretrained(folder, safe_serialization=True)
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": tile},
        crop_size={"height": tile, "width": tile},
        image_grid_pinpoints=pinpoints,
    )
    LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    ).save_pretrained(folder)
    return folder


#: backbone name -> function(folder, **overrides) writing its tiny checkpoint folder
TINY_BUILDERS = {"llava_next": write_tiny_llava_next}
