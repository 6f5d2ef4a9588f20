"""The backbone registry: the one place where a backbone is chosen by name.

Adding a backbone is one module holding a `Backbone` subclass decorated by `@register_backbone`, plus
its module name in `BACKBONE_MODULES`, plus a tiny builder (a `vlm2vec.testing.tiny_*` module). The
modules are imported on first use of the registry, so `import vlm2vec` stays cheap.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from ..errors import ModelLoadError, ModelNotFoundError
from .base import Backbone

#: the modules that define backbones (each registers its classes when imported)
BACKBONE_MODULES: tuple[str, ...] = ("qwen2vl", "qwen3vl", "llava_next", "phi3v")
_REGISTRY: dict[str, type[Backbone]] = {}


def register_backbone(cls: type[Backbone]) -> type[Backbone]:
    """Class decorator: make `cls` available under `cls.name`."""
    _REGISTRY[cls.name] = cls
    return cls


def _registry() -> dict[str, type[Backbone]]:
    for module in BACKBONE_MODULES:
        importlib.import_module(f"{__package__}.{module}")
    return _REGISTRY


def available_backbones() -> list[str]:
    """The registry keys (the official `model_type` values), sorted."""
    return sorted(_registry())


def get_backbone(name: str) -> Backbone:
    """Return an instance of the backbone registered as `name`."""
    registry = _registry()
    if name not in registry:
        raise ModelLoadError(
            f"model.backbone: unknown backbone '{name}'; available: {', '.join(available_backbones())}"
        )
    return registry[name]()


def detect_backbone(path: str | Path) -> str:
    """Registry key for a local model folder: the `model_type` in its config.json."""
    cfg_file = Path(path) / "config.json"
    if not cfg_file.is_file():
        raise ModelNotFoundError(f"{cfg_file}: no config.json, cannot tell which backbone this folder holds")
    try:
        model_type = json.loads(cfg_file.read_text()).get("model_type")
    except (ValueError, AttributeError) as exc:
        raise ModelLoadError(f"{cfg_file}: not a JSON object ({exc})") from None
    if model_type in _registry():  # registry keys are the official model_type values
        return model_type
    raise ModelLoadError(
        f"{cfg_file}: model_type '{model_type}' matches no registered backbone ({', '.join(available_backbones())}); "
        "name one with model.backbone"
    )
