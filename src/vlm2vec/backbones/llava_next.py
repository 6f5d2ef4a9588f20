"""LLaVA-NeXT (LLaVA-1.6) backbone on transformers' own `LlavaNextForConditionalGeneration` (its inner
`LlavaNextModel`), for llava-hf folders (e.g. llava-v1.6-mistral-7b-hf, the paper's LLaVA-1.6 rows).

Prompts: each MMEB ``<|image_k|>`` becomes the processor's ``<image>`` token, expanded to the number of
features LLaVA-NeXT's anyres tiling gives that image (base tile + unpadded high-resolution grid with a
newline per row), exactly as `LlavaNextProcessor` does; ``max_length`` bounds the text tokens only.

Resolution (``model.image_resolution``): the VLM2Vec code resizes every LLaVA image to 1344x1344
("high", its default, the paper's high-res row) or 336x336 ("low") before the processor; ``native``
keeps the image and lets anyres pick the grid.

Positions are 0..n-1 over the real tokens whatever the padding side. CLIP features come from
``vision_feature_layer`` (the second-to-last layer in LLaVA-1.6): the later CLIP layers and the post
layer-norm never reach the embedding, so they are frozen (DDP would otherwise wait for their gradient).
Lockstep as for every backbone, through `embed_with_images`: the vision path (CLIP on every anyres
tile, projector, unpadding, image newline) is one module call (`LlavaNextVision`) returning one tensor;
a text-only training chunk runs it on a dummy image whose features times zero join the embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import Image

from ..config import ConfigError, ModelConfig
from ..weight_files import from_pretrained_strict
from .base import (
    Backbone,
    ImagesInput,
    TextInput,
    embed_with_images,
    pad_rows,
    padded_positions,
    to_rgb,
    torch_dtype,
    unwrap_peft,
)
from .media import VideosInput, prepare_media
from .placeholders import (
    MMEB_IMAGE_PLACEHOLDER,
    expand_within_budget,
    media_expansion,
    scatter_features,
    split_at_token,
)
from .registry import register_backbone

#: VLM2Vec's LLaVA resizes (its dataset code): "high" for the published LLaVA-1.6 rows
RESOLUTIONS: dict[str, tuple[int, int] | None] = {"high": (1344, 1344), "low": (336, 336), "native": None}


class LlavaNextEmbedProcessor:
    """MMEB placeholders -> LLaVA-NeXT inputs (input_ids, attention_mask, pixel_values, image_sizes)."""

    def __init__(
        self,
        hf_processor: Any,
        max_length: int | None = None,
        image_resolution: str = "high",
        video_as_images: bool = False,
    ):
        if image_resolution not in RESOLUTIONS:
            raise ValueError(
                f"model.image_resolution must be one of {sorted(RESOLUTIONS)}, got {image_resolution!r}"
            )
        self.hf = hf_processor
        self.tokenizer = hf_processor.tokenizer
        self.image_processor = hf_processor.image_processor
        self.max_length = max_length
        self.video_as_images = video_as_images
        self.resize = RESOLUTIONS[image_resolution]
        self.image_token = hf_processor.image_token
        self.image_token_id = int(hf_processor.image_token_id)
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = int(pad) if pad is not None else 0

    def _image(self, image: Image.Image) -> Image.Image:
        image = to_rgb(image)
        return image.resize(self.resize) if self.resize is not None else image

    def num_image_tokens(self, image: Image.Image) -> int:
        """Positions image `image` takes in the prompt (anyres tiles after the configured resize), from
        its size alone: what `eval.batch_tokens` sizes batches by."""
        w, h = self.resize or image.size
        return int(self.hf._get_num_multimodal_tokens(image_sizes=[[h, w]]).num_image_tokens[0])

    def _row_ids(self, text: str, n_tokens: list[int], max_text: int | None) -> list[int]:
        """The whole prompt tokenised with one `<image>` per placeholder, each expanded to its image's tokens."""
        ids = self.tokenizer(MMEB_IMAGE_PLACEHOLDER.sub(self.image_token, text))["input_ids"]
        expansions = [media_expansion(self.image_token_id, n) for n in n_tokens]
        return expand_within_budget(split_at_token(ids, self.image_token_id), expansions, max_text).ids

    def __call__(
        self,
        text: TextInput,
        images: ImagesInput = None,
        max_length: int | None = None,
        padding_side: str = "right",
        videos: VideosInput = None,
    ) -> dict[str, torch.Tensor]:
        texts, per_row, _ = prepare_media(
            text,
            images,
            videos,
            backbone="llava_next",
            video_input=False,
            video_as_images=self.video_as_images,
        )
        max_text = max_length if max_length is not None else self.max_length
        flat = [self._image(im) for row in per_row for im in row]
        out: dict[str, torch.Tensor] = {}
        n_tokens: list[int] = []
        if flat:
            pix = self.image_processor(images=flat, return_tensors="pt")
            out["pixel_values"] = pix["pixel_values"]
            out["image_sizes"] = pix["image_sizes"]
            sizes = pix["image_sizes"].tolist()
            n_tokens = list(self.hf._get_num_multimodal_tokens(image_sizes=sizes).num_image_tokens)
        rows, start = [], 0
        for r, (t, imgs) in enumerate(zip(texts, per_row)):
            rows.append(self._row_ids(t, n_tokens[start : start + len(imgs)], max_text))
            start += len(imgs)
            if not rows[-1]:
                raise ValueError(f"row {r}: empty prompt (no text and no image)")
        input_ids, mask = pad_rows(rows, self.pad_token_id, padding_side)
        out.update(
            input_ids=input_ids,
            attention_mask=mask,
            num_images=torch.tensor([len(r) for r in per_row], dtype=torch.long),
        )
        return out

    def save_pretrained(self, path: str) -> None:
        self.hf.save_pretrained(path)


@register_backbone
class LlavaNextBackbone(Backbone):
    """llava-hf LLaVA-NeXT folders (CLIP ViT-L/14-336 + Mistral/Vicuna/...), anyres tiling."""

    name = "llava_next"
    lora_targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    vision_lora_targets = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
    language_model_pattern = r"language_model\."
    vision_pattern = r"vision_tower\."
    per_image_keys = ("pixel_values", "image_sizes")

    def _finish(self, model: torch.nn.Module, cfg: ModelConfig) -> torch.nn.Module:
        head, emb = model.get_output_embeddings(), model.get_input_embeddings()
        if head is not None and head.weight is not emb.weight:
            head.weight.requires_grad_(False)  # hidden states only: the LM head gets no gradient
        tower = model.model.vision_tower
        for layer in tower.encoder.layers[_used_vision_layers(model.config) :]:
            layer.requires_grad_(False)
        tower.post_layernorm.requires_grad_(False)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        return model

    def load_model(self, path: str, cfg: ModelConfig) -> torch.nn.Module:
        from transformers import LlavaNextForConditionalGeneration

        model = from_pretrained_strict(  # a key that lands on no parameter is an error, not a warning
            LlavaNextForConditionalGeneration,
            path,
            dtype=torch_dtype(cfg.dtype),
            attn_implementation=cfg.attn_implementation,
        )
        return self._finish(model, cfg).eval()

    def model_from_config(self, hf_config: Any, cfg: ModelConfig) -> torch.nn.Module:
        from transformers import LlavaNextForConditionalGeneration

        hf_config._attn_implementation = cfg.attn_implementation
        model = LlavaNextForConditionalGeneration._from_config(hf_config, dtype=torch_dtype(cfg.dtype))
        return self._finish(model, cfg)

    def load_processor(self, path: str, cfg: ModelConfig) -> LlavaNextEmbedProcessor:
        from transformers import LlavaNextProcessor

        return LlavaNextEmbedProcessor(
            LlavaNextProcessor.from_pretrained(path),
            cfg.max_length,
            cfg.image_resolution,
            cfg.video_as_images,
        )

    def last_hidden_state(self, model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """`LlavaNextModel.forward`'s steps: input embeddings with the image features in place (through
        `embed_with_images`), then its language model."""
        inner = unwrap_peft(model).model  # LlavaNextModel: no LM head, no logits
        input_ids, mask = inputs["input_ids"], inputs["attention_mask"]
        pixels = inputs.get("pixel_values")
        image_args = None if pixels is None else (pixels, inputs["image_sizes"])
        embeds = embed_with_images(
            lambda: inner.get_input_embeddings()(input_ids),
            inner,
            LlavaNextVision(inner),
            image_args,
            lambda embeds: _dummy_image(inner),
            lambda embeds, features: scatter_features(
                embeds, input_ids == inner.config.image_token_id, features
            ),
        )
        out = inner.language_model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=padded_positions(mask), use_cache=False
        )
        return out.last_hidden_state

    def lora_target_modules(self, cfg: ModelConfig) -> str:
        """Language-model projections; with ``lora_vision`` also the CLIP layers that feed the features."""
        lm = "|".join(map(_escape, cfg.lora_target_modules or self.lora_targets))
        patterns = [rf".*language_model\.layers\.\d+\..*\.(?:{lm})"]
        if cfg.lora_vision:
            from transformers import AutoConfig

            used = _used_vision_layers(AutoConfig.from_pretrained(cfg.path))
            layers = "|".join(str(i) for i in range(used))
            vision = "|".join(map(_escape, self.vision_lora_targets))
            patterns.append(rf".*vision_tower\.encoder\.layers\.(?:{layers})\..*\.(?:{vision})")
        return "|".join(f"(?:{p})" for p in patterns)


def _escape(name: str) -> str:
    import re

    return re.escape(name)


def _used_vision_layers(config: Any) -> int:
    """How many CLIP encoder layers feed the image features (all before ``vision_feature_layer``)."""
    layer = config.vision_feature_layer
    n = config.vision_config.num_hidden_layers
    layers = layer if isinstance(layer, (list, tuple)) else [layer]
    return max((n + 1 + i if i < 0 else i) for i in layers)


class LlavaNextVision(torch.nn.Module):
    """The vision path of a `LlavaNextModel` as one module returning one tensor: transformers' own
    `get_image_features` (CLIP on every anyres tile, projector, unpadding, image newline) with the
    images' features concatenated in order. A view, not a part of the model: it holds the model's own
    tower, projector and newline (so its parameters are theirs) and is never saved."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.vision_tower = inner.vision_tower
        self.multi_modal_projector = inner.multi_modal_projector
        self.image_newline = inner.image_newline
        object.__setattr__(self, "_inner", inner)  # not a submodule: the language model is not vision

    def forward(self, pixel_values: torch.Tensor, image_sizes: torch.Tensor) -> torch.Tensor:
        status = getattr(self.image_newline, "ds_status", None)  # ZeRO-3: the model's own parameter,
        if status is not None and status.name == "NOT_AVAILABLE":  # used outside LlavaNextModel.forward
            raise ConfigError(
                "llava_next under ZeRO-3: image_newline is partitioned; keep it whole with "
                "zero_optimization.stage3_param_persistence_threshold above its size "
                f"({self.image_newline.ds_numel}; the default 1e5 does)"
            )
        param = next(self.vision_tower.parameters())
        out = self._inner.get_image_features(pixel_values.to(param.dtype), image_sizes, return_dict=True)
        return torch.cat(out.pooler_output, dim=0)


def _dummy_image(inner: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """One blank image of the tile size, as the processor lays it out (all its anyres tiles)."""
    from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

    cfg = inner.config
    size = cfg.vision_config.image_size
    n_patches = image_size_to_num_patches((size, size), cfg.image_grid_pinpoints, size)
    param = next(inner.vision_tower.parameters())
    pixels = torch.zeros(1, n_patches, 3, size, size, device=param.device, dtype=param.dtype)
    return pixels, torch.tensor([[size, size]], device=param.device)


__all__: Sequence[str] = ["LlavaNextBackbone", "LlavaNextEmbedProcessor", "RESOLUTIONS"]
