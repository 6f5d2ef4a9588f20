"""`vlm2vec embed`: encode the configured corpus into vector shards and an items table."""

from __future__ import annotations

from pathlib import Path

from ..config import Config


def run(cfg: Config, explicit: set[str] | None = None) -> Path:
    """Embed as configured; returns the output folder."""
    from ..corpus.embed import run_embed

    return run_embed(cfg, explicit)
