"""Phi-3.5-V backbone: loading and saving the official file layout, processor, hidden states.

A folder in the official layout (the base model, or a VLM2Vec full fine-tune) holds config.json with
`model_type: phi3_v`, safetensors shards with the official key names (plus an index json when there
are several), tokenizer files and preprocessor_config.json. It opens here with no remote code: the
config is read into `Phi3VConfig`, the module is built with empty weights and the shards are assigned
by key name. `save_model` writes the same layout back (rope scaling as `su`, official key names), so
our checkpoints open wherever the official ones do. A PEFT LoRA adapter over the base is handled by
peft itself (`lora_target_modules` names the language-model projections).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from safetensors.torch import save_file
from transformers import PreTrainedTokenizerFast

from ..errors import ModelLoadError
from ..weight_files import read_tensors
from .base import Backbone, torch_dtype, unwrap_peft
from .phi3v_model import VIT_L_14_336, Phi3VConfig, Phi3VForCausalLM
from .phi3v_processor import CLIP_MEAN, CLIP_STD, Phi3VProcessor
from .registry import register_backbone

logger = logging.getLogger(__name__)

INDEX_FILE = "model.safetensors.index.json"
#: buffers that some checkpoints carry but that are recomputed here
IGNORED_KEYS = re.compile(r".*(\.position_ids|rotary_emb\.inv_freq)$")
#: config.json keys written back, in the official file's order (plus `vision_config`, our convention)
OFFICIAL_KEYS = (
    "architectures", "attention_dropout", "auto_map", "bos_token_id", "embd_layer",
    "embd_pdrop", "eos_token_id", "hidden_act", "hidden_size", "img_processor", "initializer_range",
    "intermediate_size", "max_position_embeddings", "model_type", "num_attention_heads",
    "num_hidden_layers", "num_key_value_heads", "original_max_position_embeddings", "pad_token_id",
    "resid_pdrop", "rms_norm_eps", "rope_scaling", "rope_theta", "sliding_window", "tie_word_embeddings",
    "torch_dtype", "transformers_version", "use_cache", "vocab_size", "vision_config",
)  # fmt: skip


#: CLIPVisionConfig fields written to `vision_config`
VISION_KEYS = (
    "model_type", "hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers",
    "num_attention_heads", "num_channels", "image_size", "patch_size", "hidden_act", "layer_norm_eps",
    "attention_dropout", "initializer_range", "initializer_factor",
)  # fmt: skip

# ------------------------------------------------------------------------------------------- config


def resolve_attn_implementation(requested: str) -> str:
    """flash_attention_2 only when the package is installed (and CUDA present); otherwise SDPA."""
    if requested == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None or not torch.cuda.is_available():
            logger.warning("flash_attention_2 requested but flash_attn/CUDA is not available: using sdpa")
            return "sdpa"
    return requested


def read_config(path: str | Path, attn_implementation: str = "sdpa") -> Phi3VConfig:
    """config.json of an official-layout folder -> Phi3VConfig (rope `su` read as `longrope`)."""
    data = json.loads((Path(path) / "config.json").read_text())
    if data.get("model_type") != "phi3_v":
        raise ValueError(f"{path}: config.json has model_type {data.get('model_type')!r}, expected 'phi3_v'")
    for key in ("_attn_implementation", "attn_implementation", "_name_or_path"):
        data.pop(key, None)
    config = Phi3VConfig(**data)
    config._attn_implementation = resolve_attn_implementation(attn_implementation)
    return config


def official_config_dict(config: Phi3VConfig, dtype: torch.dtype) -> dict[str, Any]:
    """The config.json the official files carry: `rope_scaling` (type `su`) and `rope_theta` at top level."""
    data = config.to_dict()
    rope = dict(data.pop("rope_parameters", None) or {})
    data["rope_theta"] = rope.pop("rope_theta", 10000.0)
    kind = rope.pop("rope_type", "default")
    rope.pop("partial_rotary_factor", None)
    rope.pop("original_max_position_embeddings", None)
    data["rope_scaling"] = (
        {"type": "su" if kind == "longrope" else kind, **rope} if kind != "default" else None
    )
    data["architectures"] = ["Phi3VForCausalLM"]
    data["model_type"] = "phi3_v"
    data["torch_dtype"] = str(dtype).removeprefix("torch.")
    vision = config.vision_config.to_dict()
    default = type(config.vision_config)(**VIT_L_14_336).to_dict()
    data["vision_config"] = (
        None if _vision_fields(vision) == _vision_fields(default) else _vision_fields(vision)
    )
    return {k: data[k] for k in OFFICIAL_KEYS if data.get(k) is not None}


def _vision_fields(vision: dict[str, Any]) -> dict[str, Any]:
    return {k: vision[k] for k in VISION_KEYS if k in vision}


# -------------------------------------------------------------------------------------------- files


def checkpoint_files(path: str | Path) -> list[Path]:
    """Safetensors files of a folder: those named by the index json, else model.safetensors, else all."""
    path = Path(path)
    index = path / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [path / name for name in sorted(set(weight_map.values()))]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path}: no safetensors weights (only the safetensors layout is supported)")
    return files


def load_weights(model: torch.nn.Module, path: str | Path, dtype: torch.dtype) -> None:
    """Assign every shard's tensors by key name; unexpected or missing keys are an error."""
    unexpected: list[str] = []
    for file in checkpoint_files(path):
        shard = read_tensors(file)  # a truncated or broken file: one line naming it
        shard = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in shard.items()}
        result = model.load_state_dict(shard, strict=False, assign=True)
        unexpected += [k for k in result.unexpected_keys if not IGNORED_KEYS.match(k)]
        del shard
    missing = [name for name, p in model.named_parameters() if p.is_meta]
    if unexpected or missing:
        raise ModelLoadError(
            f"{path}: weights do not match the Phi-3.5-V layout; "
            f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}"
        )


def save_weights(model: torch.nn.Module, path: str | Path, max_shard_bytes: int = 5 * 1024**3) -> list[Path]:
    """Write the state dict as official-named safetensors shards (+ index json when more than one)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for old in [*path.glob("model*.safetensors"), path / INDEX_FILE]:
        old.unlink(missing_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    if len(shards) == 1:
        names = ["model.safetensors"]
    else:
        names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    for name, shard in zip(names, shards):
        save_file(shard, str(path / name), metadata={"format": "pt"})
    if len(shards) > 1:
        total = sum(t.numel() * t.element_size() for t in state.values())
        weight_map = {k: name for name, shard in zip(names, shards) for k in shard}
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (path / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return [path / n for n in names]


def save_phi3v(model: torch.nn.Module, path: str | Path, max_shard_bytes: int = 5 * 1024**3) -> None:
    """config.json + safetensors in the official layout."""
    if not isinstance(model, Phi3VForCausalLM):
        raise TypeError(
            f"expected a Phi3VForCausalLM, got {type(model).__name__}; merge a LoRA adapter first "
            "(merge_and_unload) or save the adapter with peft"
        )
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    dtype = next(model.parameters()).dtype
    (path / "config.json").write_text(json.dumps(official_config_dict(model.config, dtype), indent=2) + "\n")
    save_weights(model, path, max_shard_bytes)


def finish_model(model: Phi3VForCausalLM, gradient_checkpointing: bool) -> Phi3VForCausalLM:
    if gradient_checkpointing:
        model.activation_checkpointing_enable()
    return model.eval()


def load_phi3v(
    path: str | Path,
    dtype: str = "float32",
    attn_implementation: str = "sdpa",
    gradient_checkpointing: bool = False,
) -> Phi3VForCausalLM:
    """Build the native module from an official-layout folder and assign its weights (no remote code)."""
    config = read_config(path, attn_implementation)
    with init_empty_weights(include_buffers=False):
        model = Phi3VForCausalLM(config)
    load_weights(model, path, torch_dtype(dtype))
    return finish_model(model, gradient_checkpointing)


def vision_settings(path: str | Path | None) -> dict[str, Any]:
    """The vision tower's settings for a folder: its `vision_config`, else CLIP ViT-L/14-336."""
    cfg_file = Path(path) / "config.json" if path is not None else None
    data = json.loads(cfg_file.read_text()) if cfg_file is not None and cfg_file.is_file() else {}
    vision = data.get("vision_config")
    settings = dict(VIT_L_14_336) if vision is None else {"image_size": 224, "patch_size": 32, **vision}
    layer_idx = int((data.get("img_processor") or {}).get("layer_idx", -2))
    settings["num_feature_layers"] = settings.get("num_hidden_layers", 12) + 1 + layer_idx
    return settings


# ----------------------------------------------------------------------------------------- backbone


@register_backbone
class Phi3VBackbone(Backbone):
    """microsoft/Phi-3.5-vision-instruct and VLM2Vec's Phi-3.5-V checkpoints, written natively."""

    name = "phi3_v"
    lora_targets = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    vision_lora_targets = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]

    def load_model(self, path: str, cfg: Any) -> torch.nn.Module:
        return load_phi3v(path, cfg.dtype, cfg.attn_implementation, cfg.gradient_checkpointing)

    def model_from_config(self, hf_config: Any, cfg: Any) -> torch.nn.Module:
        config = hf_config if isinstance(hf_config, Phi3VConfig) else Phi3VConfig(**dict(hf_config))
        config._attn_implementation = resolve_attn_implementation(cfg.attn_implementation)
        model = Phi3VForCausalLM(config)
        dtype = torch_dtype(cfg.dtype)
        for param in model.parameters():
            param.data = param.data.to(dtype)
        return finish_model(model, cfg.gradient_checkpointing)

    def load_processor(self, path: str, cfg: Any) -> Phi3VProcessor:
        folder = Path(path)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))  # tokenizer.json exactly as shipped
        pre_file = folder / "preprocessor_config.json"
        pre = json.loads(pre_file.read_text()) if pre_file.is_file() else {}
        vision = vision_settings(folder)
        return Phi3VProcessor(
            tokenizer,
            num_crops=cfg.num_crops,
            crop_size=int(pre.get("crop_size", vision["image_size"])),
            patch_size=int(pre.get("patch_size", vision["patch_size"])),
            image_mean=pre.get("image_mean", CLIP_MEAN),
            image_std=pre.get("image_std", CLIP_STD),
            max_length=cfg.max_length,
            video_as_images=cfg.video_as_images,
        )

    def last_hidden_state(self, model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        base = unwrap_peft(model)
        out = base.model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs.get("attention_mask"),
            pixel_values=inputs.get("pixel_values"),
            image_sizes=inputs.get("image_sizes"),
        )
        return out.last_hidden_state

    def save_model(self, model: torch.nn.Module, path: str) -> None:
        save_phi3v(model, path)

    def lora_target_modules(self, cfg: Any) -> str:
        """A regex: the given (or default) names inside the decoder layers only; with `lora_vision`, the
        CLIP projections of the layers that feed the image features (the later ones get no gradient)."""
        names = list(cfg.lora_target_modules or self.lora_targets)
        patterns = [rf"model\.layers\.\d+\.(?:.*\.)?(?:{'|'.join(map(re.escape, names))})"]
        if cfg.lora_vision:
            used = vision_settings(cfg.path)["num_feature_layers"]
            layers = "|".join(str(i) for i in range(used))
            vision = "|".join(map(re.escape, self.vision_lora_targets))
            patterns.append(
                rf"model\.vision_embed_tokens\.img_processor\.vision_model\.encoder\.layers\.(?:{layers})\."
                rf"(?:.*\.)?(?:{vision})"
            )
        return "|".join(f"(?:.*\\.)?{p}" for p in patterns)
