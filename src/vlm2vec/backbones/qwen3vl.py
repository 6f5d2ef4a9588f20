"""Qwen3-VL backbone on transformers' own `Qwen3VLForConditionalGeneration` (its inner `Qwen3VLModel`).

Three prompt formats (``ModelConfig.prompt_format``):

- ``vlm2vec`` (default, as for Qwen2-VL): each MMEB ``<|image_k|>`` becomes N ``<|image_pad|>`` tokens
  with plain 1-D positions. No VLM2Vec Qwen3-VL release exists; this keeps the project's convention.
- ``native``: ``<|vision_start|>`` + N pads + ``<|vision_end|>`` with the model's 3-D (interleaved)
  M-RoPE positions, as the base model was pre-trained.
- ``qwen3_vl_embedding``: the format of Qwen3-VL-Embedding checkpoints (QwenLM/Qwen3-VL-Embedding):
  the chat template with the instruction as system message (``model.system_instruction``, default
  "Represent the user's input."; a final full stop is added when it ends without punctuation), the
  item as the user message, the generation prompt ``<|im_start|>assistant\\n`` after it, native image
  tokens and 3-D positions; the embedding is the final token's last hidden state (our last-token
  pooling). An empty text becomes "NULL", as there.

Qwen3-VL adds DeepStack: features of some vision blocks are added to the hidden states of the first
decoder layers at the image positions. Lockstep (ZeRO-3, ZeRO-2 bucket order, DDP) as for every
backbone through `embed_with_images`: the vision tower's merged and DeepStack features come out of
its one call as one tensor (concatenated on the feature axis) and are split back for their places; a
text-only training chunk runs the tower on a dummy image whose whole output, times zero, joins the
input embeddings.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, ModelConfig, choices_of
from .base import embed_with_images, unwrap_peft
from .placeholders import VIDEO_TYPE, Expansion, media_expansion, scatter_features
from .qwen2vl import QwenVLProcessor, _QwenVLBase
from .qwen_vision import in_position_order, vision_args
from .registry import register_backbone

DEFAULT_INSTRUCTION = "Represent the user's input."


def embedding_instruction(instruction: str | None) -> str:
    """The system message as Qwen3-VL-Embedding writes it: stripped, with a full stop if unpunctuated."""
    text = (instruction or DEFAULT_INSTRUCTION).strip()
    if text and not unicodedata.category(text[-1]).startswith("P"):
        text += "."
    return text


class Qwen3VLProcessor(QwenVLProcessor):
    """`QwenVLProcessor` plus the Qwen3-VL-Embedding chat format (``prompt_format='qwen3_vl_embedding'``)."""

    def __init__(
        self,
        tokenizer: Any,
        image_processor: Any,
        prompt_format: str = "vlm2vec",
        max_length: int | None = None,
        instruction: str = DEFAULT_INSTRUCTION,
        video_as_images: bool = False,
    ):
        formats = choices_of(ModelConfig, "prompt_format")  # Qwen3-VL reads every format
        if prompt_format not in formats:
            raise ConfigError(
                f"model.prompt_format must be one of {formats} for qwen3_vl, got {prompt_format!r}",
                key="model.prompt_format",
            )
        self.chat = prompt_format == "qwen3_vl_embedding"
        super().__init__(
            tokenizer, image_processor, "native" if self.chat else prompt_format, max_length, video_as_images
        )
        self.format_name = prompt_format  # `prompt_format` stays "native": how images are laid out
        self.instruction = embedding_instruction(instruction)
        if self.chat:
            enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
            self._prefix = enc(f"<|im_start|>system\n{self.instruction}<|im_end|>\n<|im_start|>user\n")
            self._suffix = enc("<|im_end|>\n<|im_start|>assistant\n")

    def video_expansion(self, groups: int, count: int) -> Expansion:
        """Native layout: each temporal group between its own vision start / end markers, as Qwen3-VL
        separates a video's groups (its timestamps are left out: frames carry no times here)."""
        if self.prompt_format != "native":
            return super().video_expansion(groups, count)
        ids: list[int] = []
        types: list[int] = []
        for _ in range(groups):
            one = media_expansion(
                self.video_token_id, count // groups, self.vision_start_id, self.vision_end_id, VIDEO_TYPE
            )
            ids, types = ids + one.ids, types + one.types
        return Expansion(ids, types)

    def _row_ids(
        self,
        text: str,
        n_tokens_per_image: list[int],
        max_text: int | None,
        videos: Sequence[Expansion] = (),
    ) -> tuple[list[int], list[int]]:
        if not self.chat:
            return super()._row_ids(text, n_tokens_per_image, max_text, videos)
        if not text.strip() and not n_tokens_per_image and not videos:
            text = "NULL"  # as Qwen3-VL-Embedding does for an empty item
        ids, types = super()._row_ids(text, n_tokens_per_image, max_text, videos)
        return (
            self._prefix + ids + self._suffix,
            [0] * len(self._prefix) + types + [0] * len(self._suffix),
        )


def is_qwen3_vl_embedding_folder(path: str | Path) -> bool:
    """A Qwen3-VL-Embedding release: its config.json names an embedding architecture (e.g.
    ``Qwen3VLForEmbedding``, the class of its published code) instead of the generation class."""
    cfg_file = Path(path) / "config.json"
    if not cfg_file.is_file():
        return False
    archs = json.loads(cfg_file.read_text()).get("architectures") or []
    return any("Embedding" in a for a in archs)


@register_backbone
class Qwen3VLBackbone(_QwenVLBase):
    """Qwen3-VL (2B..32B dense) and Qwen3-VL-Embedding checkpoints."""

    name = "qwen3_vl"
    model_class_name = "Qwen3VLForConditionalGeneration"
    vision_lora_targets = ["qkv", "proj", "linear_fc1", "linear_fc2"]

    def folder_defaults(self, path: str) -> dict[str, Any]:
        """A Qwen3-VL-Embedding folder embeds in its own format unless the caller says otherwise."""
        return {"prompt_format": "qwen3_vl_embedding"} if is_qwen3_vl_embedding_folder(path) else {}

    def load_processor(self, path: str, cfg: ModelConfig) -> Qwen3VLProcessor:
        base = super().load_processor(path, replace(cfg, prompt_format="vlm2vec"))
        return Qwen3VLProcessor(
            base.tokenizer,
            base.image_processor,
            cfg.prompt_format,
            cfg.max_length,
            cfg.system_instruction,
            cfg.video_as_images,
        )

    def last_hidden_state(self, model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """`Qwen3VLModel.forward`'s steps (token embeddings, vision tower, language model with DeepStack),
        the embeddings built by `embed_with_images` like every backbone's."""
        inner = unwrap_peft(model).model  # Qwen3VLModel: no LM head, no logits
        embeds, where, deepstack = _input_embeddings_and_deepstack(inner, inputs)
        out = inner.language_model(
            inputs_embeds=embeds,
            attention_mask=inputs["attention_mask"],
            position_ids=self.position_ids(inner, inputs),
            visual_pos_masks=where,
            deepstack_visual_embeds=deepstack,
            use_cache=False,
        )
        return out.last_hidden_state


def _input_embeddings_and_deepstack(
    inner: torch.nn.Module, inputs: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor] | None]:
    """Input embeddings, media pad mask and DeepStack features from ONE call of the vision tower.

    The tower returns the merged features and one DeepStack feature per `deepstack_visual_indexes`
    layer, all [image tokens, hidden]; they travel through `embed_with_images` as one tensor
    (concatenated on the feature axis) and are split back here: the first part is written at the image
    pads, the others go to the first decoder layers at those positions, as `Qwen3VLModel.forward` does.
    A text-only training batch runs the tower on the dummy image and adds all of it times zero to the
    embeddings (an exact no-op; every vision parameter gets its zero gradient at the same point of
    backward as with real images, since the concatenation's gradient waits for all its parts).
    """
    input_ids = inputs["input_ids"]
    image_args, dummy = vision_args(inner, inputs)
    parts: dict[str, Any] = {}

    def place(embeds: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        parts["where"], features = in_position_order(inner.config, input_ids, features)
        merged, *parts["deepstack"] = features.chunk(1 + len(inner.visual.deepstack_visual_indexes), dim=-1)
        return scatter_features(embeds, parts["where"], merged)

    embeds = embed_with_images(
        lambda: inner.get_input_embeddings()(input_ids),
        inner,
        inner.visual,
        image_args,
        dummy,
        place,
        select=lambda out: torch.cat([out.pooler_output, *out.deepstack_features], dim=-1),
    )
    if "deepstack" not in parts:  # no images or videos: the language model runs without DeepStack
        return embeds, None, None
    return embeds, parts["where"], parts["deepstack"]


__all__: Sequence[str] = [
    "Qwen3VLBackbone",
    "Qwen3VLProcessor",
    "embedding_instruction",
    "is_qwen3_vl_embedding_folder",
]
