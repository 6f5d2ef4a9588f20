"""Backbones: one module per vision-language model family behind the `Backbone` interface (`base`),
chosen by name through the registry (`registry`), sharing the placeholder and feature kit
(`placeholders`)."""

from __future__ import annotations

from .base import Backbone, normalize_batch, to_rgb
from .placeholders import MMEB_IMAGE_PLACEHOLDER, check_placeholders
from .registry import available_backbones, detect_backbone, get_backbone, register_backbone

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
