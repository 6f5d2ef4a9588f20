"""The on-disk layout of an embedded corpus: vector shards written as they are encoded, metadata as parquet.

    <folder>/vectors-00000-of-00002.safetensors   {"vectors": float32|float16 [n, dim], "rows": int64 [n]}
    <folder>/items.parquet                        row, key, text, image, label, source, source_row, count
    <folder>/manifest.json                        model fingerprint, corpus id, dim, dtype, shards; written last

A shard holds its vectors in encoding order (length-sorted batches) and, in `rows`, the item row of each,
so a shard is written as soon as its batches are encoded and memory never holds more than one shard.
Every file is written atomically and the manifest last, so a folder with a manifest is complete; a
folder without one is an interrupted run, resumed shard by shard (a shard's safetensors metadata names
the model and the items it holds). Format 1 folders (shards in item order, no `rows`) still read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..atomic_files import atomic_path, atomic_write_json, is_temp
from .sources import CorpusError

FORMAT = "vlm2vec-embeddings/2"
READABLE_FORMATS = ("vlm2vec-embeddings/1", FORMAT)
MANIFEST = "manifest.json"
ITEMS = "items.parquet"
DTYPES = {"float32": torch.float32, "float16": torch.float16}


def shard_name(i: int, n: int) -> str:
    return f"vectors-{i:05d}-of-{n:05d}.safetensors"


def write_shard(path: Path, vectors: torch.Tensor, rows: torch.Tensor, meta: dict[str, str]) -> Path:
    """One shard, atomically: `vectors` in the storage dtype named by `meta["dtype"]`, their item rows."""
    if vectors.shape[0] != rows.shape[0]:
        raise ValueError(f"{path}: {vectors.shape[0]} vectors but {rows.shape[0]} rows")
    tensors = {"vectors": vectors.to(DTYPES[meta["dtype"]]).contiguous(), "rows": rows.to(torch.int64)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def shard_metadata(path: Path) -> dict[str, str] | None:
    """The metadata a shard was written with; None when the file is absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # a damaged shard is rewritten, not trusted
        return None


def shard_dim(path: Path) -> int:
    with safe_open(str(path), framework="pt") as f:
        return int(f.get_slice("vectors").get_shape()[1])


def remove_stale_shards(folder: Path, names: list[str]) -> None:
    """Shards of an earlier layout (another shard count) are removed once the new ones are written."""
    for stale in folder.glob("vectors-*.safetensors"):
        if stale.name not in names and not is_temp(stale):
            stale.unlink()


def write_items(folder: Path, table: pa.Table) -> None:
    with atomic_path(folder / ITEMS) as tmp:
        pq.write_table(table, tmp)


def write_manifest(folder: Path, num_items: int, dim: int, dtype: str, names: list[str], info: dict) -> None:
    """Written last: its presence marks the folder complete."""
    manifest = {"format": FORMAT, "num_items": num_items, "dim": dim, "dtype": dtype, "shards": names, **info}
    atomic_write_json(folder / MANIFEST, manifest)


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        shards = [p for p in Path(folder).glob("vectors-*.safetensors") if not is_temp(p)]
        if shards:
            raise CorpusError(
                f"{folder}: half-written shard folder ({len(shards)} shards, no {MANIFEST}); "
                "re-run `vlm2vec embed` (it resumes) first"
            )
        raise CorpusError(
            f"{folder}: not a complete embed output (no {MANIFEST}); run `vlm2vec embed` (it resumes) first"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") not in READABLE_FORMATS:
        raise CorpusError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest
