"""`vlm2vec eval` / evaluate.py: evaluate the configured model on MMEB and print its table."""

from __future__ import annotations

from typing import Any

from ..config import Config


def run(cfg: Config, explicit: set[str] | None = None) -> dict[str, Any]:
    """Evaluate as configured; `explicit` (the keys the YAML file or a flag set) wins over a saved
    model folder's own settings."""
    from ..evaluation import run_evaluation

    return run_evaluation(cfg, explicit=explicit)
