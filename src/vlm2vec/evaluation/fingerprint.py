"""Model fingerprint: the model half of the embedding-cache key.

The fingerprint hashes (1) the model class and its `ModelConfig` minus the fields that only say where
files live (`path`, `checkpoint`), (2) the device type, and (3) the name, dtype, shape and raw bytes of
every parameter and buffer. So two loads of the same weights share a cache, and any change to the
weights (another checkpoint, a merged LoRA, a dtype or pooling change) gets a fresh one.

Cost: one pass over the weights (copied to the CPU tensor by tensor) through BLAKE2b, about 1 GB/s:
milliseconds for test models, a few seconds for a 4B model in bf16 -- negligible next to an MMEB run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import torch

_LOCATION_FIELDS = {"path", "checkpoint"}


def _config_part(model: torch.nn.Module) -> dict:
    cfg = getattr(model, "cfg", None)
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _LOCATION_FIELDS}
    return {}


def model_fingerprint(model: torch.nn.Module) -> str:
    """Hex digest (32 chars) identifying the model's weights and encoding settings."""
    h = hashlib.blake2b(digest_size=16)
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    device = tensors[0][1].device.type if tensors else "cpu"
    header = {"class": type(model).__qualname__, "config": _config_part(model), "device": device}
    h.update(json.dumps(header, sort_keys=True, default=str).encode())
    for name, tensor in tensors:
        t = tensor.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()
