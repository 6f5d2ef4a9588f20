"""Phi-3.5-V written natively on transformers' `Phi3Model` and `CLIPVisionModel`.

transformers has no Phi-3-V class and the official checkpoint ships remote code, which we do not run.
The module tree mirrors the official checkpoint's key names (REFERENCE.md §5), so its safetensors load
by name with no renaming:

    model.embed_tokens / model.layers.* / model.norm        Phi3Model (this class subclasses it)
    model.vision_embed_tokens.img_processor.vision_model.*  CLIPVisionModel
    model.vision_embed_tokens.{glb_GN, sub_GN}              learnable separators
    model.vision_embed_tokens.img_projection.{0,2}          Linear -> GELU -> Linear
    lm_head                                                 kept for the file layout, never called

Parameters that never receive a gradient on the embedding path (the LM head, the CLIP layers after the
feature layer, CLIP's post-layernorm) are frozen at construction, and in training a text-only batch
runs the image embedding on a dummy image and adds its output times zero to the input embeddings, so
every backward reaches the trainable vision parameters in the same order (DDP needs no
`find_unused_parameters`; ZeRO-2 buckets and ZeRO-3 gathers agree across ranks).
"""

from __future__ import annotations

from typing import Any

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel, Phi3Config, Phi3Model
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.phi3.modeling_phi3 import Phi3PreTrainedModel

from .base import embed_with_images, padded_positions
from .placeholders import scatter_features

#: CLIP ViT-L/14 at 336 px: the vision tower implied by the official config (which has no vision section)
VIT_L_14_336: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 336,
    "patch_size": 14,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 768,
}

#: official `embd_layer` / `img_processor` sections (the only layout this module implements)
DEFAULT_EMBD_LAYER: dict[str, Any] = {
    "embedding_cls": "image",
    "hd_transform_order": "sub_glb",
    "projection_cls": "mlp",
    "use_hd_transform": True,
    "with_learnable_separator": True,
}


@strict
class Phi3VConfig(Phi3Config):
    """Phi-3 text settings plus the vision tower (`vision_config`, our convention) and the official
    `embd_layer` / `img_processor` sections. Rope scaling `su` is read as `longrope`."""

    model_type = "phi3_v"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=CLIPVisionConfig, init_kwargs=VIT_L_14_336)
    }

    vision_config: dict | CLIPVisionConfig | None = None
    embd_layer: dict | None = None
    img_processor: dict | None = None

    def __post_init__(self, **kwargs):
        # transformers renames `su` to `longrope` only after validating the keys longrope needs, which
        # fails for the official config; rename first.
        if isinstance(kwargs.get("rope_scaling"), dict):
            kwargs["rope_scaling"] = _su_to_longrope(kwargs["rope_scaling"])
        if isinstance(self.rope_parameters, dict):
            self.rope_parameters = _su_to_longrope(self.rope_parameters)
        self.embd_layer = {**DEFAULT_EMBD_LAYER, **(self.embd_layer or {})}
        super().__post_init__(**kwargs)
        vision = self.vision_config
        self.img_processor = {
            "image_dim_out": vision.hidden_size,
            "model_name": "openai/clip-vit-large-patch14-336",
            "name": "clip_vision_model",
            "num_img_tokens": (vision.image_size // vision.patch_size // 2) ** 2,
            **(self.img_processor or {}),
        }

    @property
    def feature_layer(self) -> int:
        """Index (negative, like `hidden_states[i]`) of the CLIP hidden states used as image features."""
        return int(self.img_processor.get("layer_idx", -2))


def published_phi35v_config(**overrides: Any) -> Phi3VConfig:
    """The published Phi-3.5-vision-instruct architecture (REFERENCE §5), for random-weight runs at
    full size (benchmarks). The 48 short/long rope factors are placeholders (ones): the real values come
    with the official config.json; with random weights they change nothing measured."""
    settings: dict[str, Any] = dict(
        vocab_size=32064,
        hidden_size=3072,
        intermediate_size=8192,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        max_position_embeddings=131072,
        original_max_position_embeddings=4096,
        rope_scaling={"type": "su", "short_factor": [1.0] * 48, "long_factor": [1.0] * 48},
        sliding_window=262144,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=32000,
        tie_word_embeddings=False,
    )
    settings.update(overrides)
    return Phi3VConfig(**settings)


def _su_to_longrope(rope: dict) -> dict:
    rope = dict(rope)
    kind = rope.pop("type", None) or rope.get("rope_type")
    if kind is not None:
        rope["rope_type"] = "longrope" if kind in ("su", "longrope") else kind
    return rope


class _ImageProcessorHolder(nn.Module):
    """Gives the CLIP tower the official prefix `img_processor.vision_model.`."""

    def __init__(self, vision_config: CLIPVisionConfig) -> None:
        super().__init__()
        self.vision_model = CLIPVisionModel(vision_config)


class Phi3VImageEmbedding(nn.Module):
    """Pixels of the HD crops -> projected image tokens in the official layout."""

    def __init__(self, config: Phi3VConfig) -> None:
        super().__init__()
        embd = config.embd_layer
        if not (embd.get("use_hd_transform") and embd.get("with_learnable_separator")):
            raise NotImplementedError(
                f"only the HD transform with learnable separators is implemented, got {embd}"
            )
        if (
            embd.get("hd_transform_order", "sub_glb") != "sub_glb"
            or embd.get("projection_cls", "mlp") != "mlp"
        ):
            raise NotImplementedError(
                f"only hd_transform_order 'sub_glb' with an 'mlp' projection is implemented: {embd}"
            )
        vision = config.vision_config
        self.crop_size = vision.image_size
        self.grid = vision.image_size // vision.patch_size
        if self.grid % 2:
            raise ValueError(f"CLIP patch grid {self.grid} must be even for the 2x2 merge")
        num_layers = vision.num_hidden_layers
        self.num_feature_layers = num_layers + 1 + config.feature_layer  # layers run to reach the features
        if not 0 <= self.num_feature_layers <= num_layers:
            raise ValueError(
                f"feature layer {config.feature_layer} out of range for {num_layers} CLIP layers"
            )
        dim = 4 * vision.hidden_size
        self.img_processor = _ImageProcessorHolder(vision)
        self.glb_GN = nn.Parameter(torch.zeros(1, 1, dim))
        self.sub_GN = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.img_projection = nn.Sequential(
            nn.Linear(dim, config.hidden_size), nn.GELU(), nn.Linear(config.hidden_size, config.hidden_size)
        )
        clip = self.img_processor.vision_model
        for module in [*clip.encoder.layers[self.num_feature_layers :], clip.post_layernorm]:
            module.requires_grad_(False)

    def crop_features(self, crops: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] -> [N, g, g, D]: CLIP hidden states of the feature layer, CLS dropped."""
        clip = self.img_processor.vision_model
        hidden = clip.embeddings(crops.to(clip.embeddings.patch_embedding.weight.dtype))
        hidden = clip.pre_layrnorm(hidden)
        for layer in clip.encoder.layers[: self.num_feature_layers]:
            hidden = layer(hidden, None)
        return hidden[:, 1:].reshape(crops.shape[0], self.grid, self.grid, -1)

    def merge_2x2(self, features: torch.Tensor) -> torch.Tensor:
        """[N, g, g, D] -> [N, g/2, g/2, 4D]; channel order (row in block, column in block, D)."""
        n, g, _, d = features.shape
        m = g // 2
        blocks = features.view(n, m, 2, m, 2, d).permute(0, 1, 3, 2, 4, 5)
        return blocks.reshape(n, m, m, 4 * d)

    def with_row_separators(self, grid: torch.Tensor) -> torch.Tensor:
        """[R, C, 4D] -> [R * (C + 1), 4D]: `sub_GN` after every row."""
        rows = grid.shape[0]
        sep = self.sub_GN.reshape(1, 1, -1).to(grid.dtype).expand(rows, 1, -1)
        return torch.cat([grid, sep], dim=1).flatten(0, 1)

    def image_tokens(self, merged: torch.Tensor, h_c: int, w_c: int) -> torch.Tensor:
        """Merged features [1 + h_c * w_c, m, m, 4D] (thumbnail first) -> unprojected tokens [N, 4D]."""
        m = merged.shape[1]
        tiles = merged[1:].reshape(h_c, w_c, m, m, -1).permute(0, 2, 1, 3, 4).reshape(h_c * m, w_c * m, -1)
        glb = self.glb_GN.reshape(1, -1).to(merged.dtype)
        return torch.cat([self.with_row_separators(tiles), glb, self.with_row_separators(merged[0])], dim=0)

    def image_layout(self, image_sizes: torch.Tensor) -> list[tuple[int, int, int, int, int]]:
        """(row, image number k from 1, slot in `pixel_values`, h_c, w_c) of every real image, in batch
        order (zero-size slots skipped)."""
        layout = []
        for b, row in enumerate(image_sizes.tolist()):
            real = [(slot, h, w) for slot, (h, w) in enumerate(row) if h > 0 and w > 0]
            for k, (slot, height, width) in enumerate(real, start=1):
                layout.append((b, k, slot, height // self.crop_size, width // self.crop_size))
        return layout

    def forward(self, pixel_values: torch.Tensor, image_sizes: torch.Tensor) -> torch.Tensor:
        """The projected tokens [sum of N_k, hidden] of all real images, image after image in batch order
        (`image_layout`): one tensor whatever the image count, so every rank's backward sees the same
        number of outputs of this module (ZeRO-3 fetches its parameters once per output tensor).

        CLIP runs once over the real crops of the whole batch; the zero crops that pad an image to
        `num_crops + 1`, and absent images, are never encoded.
        """
        layout = self.image_layout(image_sizes)
        if not layout:
            raise ValueError("image_sizes holds no real image")
        crops = [pixel_values[b, slot, : 1 + h_c * w_c] for b, _, slot, h_c, w_c in layout]
        merged = self.merge_2x2(self.crop_features(torch.cat(crops)))
        tokens, start = [], 0
        for *_, h_c, w_c in layout:
            tokens.append(self.image_tokens(merged[start : start + 1 + h_c * w_c], h_c, w_c))
            start += 1 + h_c * w_c
        return self.img_projection(torch.cat(tokens))

    def dummy_inputs(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pixel_values, image_sizes) of the smallest image accepted: a thumbnail and one tile of zeros."""
        size = self.crop_size
        crops = torch.zeros(1, 1, 2, 3, size, size, device=like.device, dtype=like.dtype)
        return crops, torch.tensor([[[size, size]]], device=like.device)


class Phi3VModel(Phi3Model):
    """The Phi-3 decoder with the image embedding; image tokens replace the positions with id `-k`."""

    config_class = Phi3VConfig

    def __init__(self, config: Phi3VConfig) -> None:
        super().__init__(config)
        self.vision_embed_tokens = Phi3VImageEmbedding(config)

    def embed(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings with image k's features written where `input_ids == -k` (image after image
        in prompt order, as the official code places them).

        Goes through `embed_with_images`: a text-only training batch runs the image embedding on a
        dummy image and adds its output times zero, so every rank runs the same modules in the same
        order (DDP needs no `find_unused_parameters`; ZeRO-2 buckets and ZeRO-3 gathers agree).
        """
        vision = self.vision_embed_tokens
        has_images = pixel_values is not None and bool((input_ids < 0).any())
        return embed_with_images(
            lambda: self.embed_tokens(input_ids.clamp(min=0)),
            self,
            vision,
            (pixel_values, image_sizes) if has_images else None,
            vision.dummy_inputs,
            lambda embeds, features: scatter_features(embeds, input_ids < 0, features),
        )

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        """Final hidden states. Positions count real tokens (0..n-1 per row), so left and right padding agree."""
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids, pixel_values, image_sizes)
        if position_ids is None and attention_mask is not None:
            position_ids = padded_positions(attention_mask)
        kwargs.setdefault("use_cache", False)
        return super().forward(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids, **kwargs
        )


class Phi3VForCausalLM(Phi3PreTrainedModel):
    """Top-level module with the official key names; `lm_head` exists only for the file layout."""

    config_class = Phi3VConfig
    config: Phi3VConfig
    _no_split_modules = ["Phi3DecoderLayer", "CLIPEncoderLayer"]

    def __init__(self, config: Phi3VConfig) -> None:
        super().__init__(config)
        self.model = Phi3VModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
        self.lm_head.requires_grad_(False)

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def forward(self, **inputs: Any) -> BaseModelOutputWithPast:
        """Hidden states, no logits: this class serves embeddings, not generation."""
        return self.model(**inputs)
