"""`vlm2vec mine`: mine hard negatives for the training queries into MMEB-train files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config
from .corpus_claims import claim_mine


def run(cfg: Config, explicit: set[str] | None = None) -> Any:
    """Mine as configured into the claimed `mine.output_dir`; returns the mining statistics on the
    main process (None elsewhere)."""
    from ..corpus.mine import run_mine, training_overrides
    from ..outputs import print_summary

    with claim_mine(cfg) as claim:
        claim.record()
        stats = run_mine(cfg, explicit)
    if stats is not None:
        out = Path(cfg.mine.output_dir)
        print_summary(
            f"mine: {stats.rows_written} rows with hard negatives in {out / 'train'}",
            [
                ("training files", out / "train"),
                ("report", out / "report.md"),
                ("statistics", out / "mine.json"),
            ],
            [
                f"{stats.queries} queries",
                f"{stats.rows_short} rows short of negatives",
                f"{stats.rows_dropped} dropped",
            ],
            f"vlm2vec train --config YOUR_TRAIN.yaml {' '.join(training_overrides(cfg))}",
        )
    return stats
