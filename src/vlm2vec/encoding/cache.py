"""On-disk embedding cache: one folder per (model fingerprint, dataset, side), many chunk files.

Each chunk file holds `{"keys": [item keys], "reps": float32 [n, H]}` and is written atomically as
encoding progresses, so an interrupted run keeps every finished chunk and a re-run encodes only what
no chunk holds. Keys are item content hashes (`items.item_key`); the model half of the key is the
fingerprint in the folder name.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch

from ..atomic_files import atomic_path, is_temp

logger = logging.getLogger(__name__)


class RepCache:
    """Content-addressed store of item representations for one model, dataset and side."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @classmethod
    def for_dataset(
        cls, cache_dir: str | Path, fingerprint: str, dataset: str, side: str, layout: str = ""
    ) -> RepCache:
        """`layout` (the evaluator's batch layout, e.g. "rows-16") gets a folder of its own, since a
        rep depends, in its last bits, on the padding of its batch."""
        return cls(Path(cache_dir) / fingerprint / layout / dataset / side)

    def load(self) -> dict[str, torch.Tensor]:
        """Every cached rep by item key (complete chunk files only)."""
        out: dict[str, torch.Tensor] = {}
        if not self.folder.is_dir():
            return out
        for file in sorted(self.folder.glob("chunk-*.pt")):
            if is_temp(file):
                continue
            try:
                data = torch.load(file, map_location="cpu", weights_only=True)
                keys, reps = data["keys"], data["reps"]
            except Exception as exc:  # an unreadable chunk is re-encoded, not trusted
                logger.warning("ignoring unreadable cache chunk %s: %s", file, exc)
                continue
            out.update(zip(keys, reps.unbind(0)))
        return out

    def save(self, keys: list[str], reps: torch.Tensor) -> Path:
        """Write one chunk atomically; its name is a hash of its keys, so re-saving is idempotent."""
        if len(keys) != reps.shape[0]:
            raise ValueError(f"cache chunk: {len(keys)} keys but {reps.shape[0]} reps")
        name = hashlib.sha1("\n".join(keys).encode()).hexdigest()[:20]
        path = self.folder / f"chunk-{name}.pt"
        with atomic_path(path) as tmp:
            torch.save({"keys": list(keys), "reps": reps.detach().to("cpu", torch.float32).contiguous()}, tmp)
        return path
