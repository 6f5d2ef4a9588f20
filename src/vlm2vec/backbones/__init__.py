"""Backbone registry: the one place where a backbone is chosen.

Adding a backbone = one module with a `Backbone` subclass decorated by `@register_backbone`, a line in
`_MODULES` (so it is imported lazily, by name), and a tiny builder in `vlm2vec.testing.tiny`.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from ..errors import ModelLoadError, ModelNotFoundError
from .base import MMEB_IMAGE_PLACEHOLDER, Backbone, check_placeholders, normalize_batch, to_rgb

#: registry key -> module that defines it (imported on first use)
_MODULES: dict[str, str] = {
    "qwen2_vl": "vlm2vec.backbones.qwen2vl",
    "qwen2_5_vl": "vlm2vec.backbones.qwen2vl",
    "qwen3_vl": "vlm2vec.backbones.qwen3vl",
    "llava_next": "vlm2vec.backbones.llava_next",
    "phi3_v": "vlm2vec.backbones.phi3v",
}
_REGISTRY: dict[str, type[Backbone]] = {}


def register_backbone(cls: type[Backbone]) -> type[Backbone]:
    """Class decorator: make `cls` available under `cls.name`."""
    _REGISTRY[cls.name] = cls
    return cls


def available_backbones() -> list[str]:
    return sorted(_MODULES)


def get_backbone(name: str) -> Backbone:
    """Return an instance of the backbone registered as `name`."""
    if name not in _REGISTRY:
        if name not in _MODULES:
            raise ModelLoadError(
                f"model.backbone: unknown backbone '{name}'; available: {', '.join(available_backbones())}"
            )
        importlib.import_module(_MODULES[name])
    return _REGISTRY[name]()


def detect_backbone(path: str | Path) -> str:
    """Registry key for a local model folder: the `model_type` in its config.json."""
    cfg_file = Path(path) / "config.json"
    if not cfg_file.is_file():
        raise ModelNotFoundError(f"{cfg_file}: no config.json, cannot tell which backbone this folder holds")
    try:
        model_type = json.loads(cfg_file.read_text()).get("model_type")
    except (ValueError, AttributeError) as exc:
        raise ModelLoadError(f"{cfg_file}: not a JSON object ({exc})") from None
    if model_type in _MODULES:  # registry keys are the official model_type values
        return model_type
    raise ModelLoadError(
        f"{cfg_file}: model_type '{model_type}' matches no registered backbone ({', '.join(available_backbones())}); "
        "name one with model.backbone"
    )


__all__ = [
    "Backbone",
    "MMEB_IMAGE_PLACEHOLDER",
    "available_backbones",
    "check_placeholders",
    "detect_backbone",
    "get_backbone",
    "normalize_batch",
    "register_backbone",
    "to_rgb",
]
