"""What a dataset's result depends on, so a re-run reuses a finished result only when nothing changed.

A result file records its settings: the model fingerprint, the batch layout (which also keys the rep
cache), the evaluation settings that change results or predictions, and a signature of the data (a
hash of the parquet bytes, every image's path, size and mtime). A finished result whose settings
differ in anything is recomputed (from the cache where the reps are still valid).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..config import EvalConfig
from .mmeb_eval import EvalDataset


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_signature(ds: EvalDataset) -> dict[str, str]:
    """What a dataset's result came from: the parquet files' bytes and every image's size + mtime."""
    parquet = hashlib.sha256()
    for f in ds.files:
        parquet.update(f"{f.name}:{file_digest(f)}\n".encode())
    images = hashlib.sha256()
    for path in sorted(ds.image_stamps):
        images.update(f"{path}:{ds.image_stamps[path]}\n".encode())
    return {"parquet_sha256": parquet.hexdigest(), "images": images.hexdigest()}


def batch_layout(eval_cfg: EvalConfig) -> str:
    """The batch layout, "rows-<batch_size>" or "tokens-<batch_tokens>": it keys the cache and the
    results, since a rep depends (in its last bits) on its batch's padding."""
    if eval_cfg.batch_tokens is not None:
        return f"tokens-{eval_cfg.batch_tokens}"
    return f"rows-{eval_cfg.batch_size}"


def scoring_settings(fingerprint: str, eval_cfg: EvalConfig) -> dict[str, Any]:
    """The settings every result depends on, V1 dataset or V2 task: model, batch layout, queries
    scored, predictions kept, tie rule and dimension."""
    return {
        "model_fingerprint": fingerprint,
        "batches": batch_layout(eval_cfg),
        "max_queries": eval_cfg.max_queries,
        "top_k_predictions": eval_cfg.top_k_predictions,
        "ties": eval_cfg.ties,
        "dim": eval_cfg.dim,
    }


def result_settings(fingerprint: str, eval_cfg: EvalConfig, signature: dict[str, str]) -> dict[str, Any]:
    """What a dataset's result and predictions files depend on; `top_k_predictions` shapes the
    predictions file and `ties` the ranks, so changing either re-scores (from the cache)."""
    return {**scoring_settings(fingerprint, eval_cfg), "data": signature}


def load_finished(path: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The finished result record at `path` if it came from exactly `settings`, else None."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if record.get("settings") == settings else None
