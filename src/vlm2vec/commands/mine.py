"""`vlm2vec mine`: mine hard negatives for the training queries into MMEB-train files."""

from __future__ import annotations

from typing import Any

from ..config import Config


def run(cfg: Config, explicit: set[str] | None = None) -> Any:
    """Mine as configured; returns the mining statistics on the main process (None elsewhere)."""
    from ..corpus.mine import run_mine

    return run_mine(cfg, explicit)
