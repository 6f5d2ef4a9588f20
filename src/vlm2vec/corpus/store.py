"""The on-disk layout of an embedded corpus: vectors as safetensors shards, metadata as parquet.

    <folder>/vectors-00000-of-00002.safetensors   {"vectors": float32 [rows, dim]}, rows in item order
    <folder>/items.parquet                        row, key, text, image, label, source, source_row, count
    <folder>/manifest.json                        model fingerprint, corpus id, dim, shards; written last

Every file is written atomically and the manifest last, so a folder with a manifest is complete; a
folder without one is an interrupted run (the encoding work itself is resumable from the rep cache).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file

from ..atomic_files import atomic_path, atomic_write_json
from .sources import CorpusError

FORMAT = "vlm2vec-embeddings/1"
MANIFEST = "manifest.json"
ITEMS = "items.parquet"


def shard_name(i: int, n: int) -> str:
    return f"vectors-{i:05d}-of-{n:05d}.safetensors"


def write_store(
    folder: str | Path, vectors: torch.Tensor, table: pa.Table, info: dict[str, Any], shard_rows: int
) -> Path:
    """Write vectors + metadata + manifest (last); stale shards of an earlier layout are removed."""
    if shard_rows < 1:
        raise CorpusError(f"embed.shard_rows must be >= 1, got {shard_rows}")
    if vectors.shape[0] != table.num_rows:
        raise ValueError(f"{vectors.shape[0]} vectors but {table.num_rows} metadata rows")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)  # the folder is incomplete until the new manifest lands
    rows = vectors.shape[0]
    n = max(1, -(-rows // shard_rows))
    names = [shard_name(i, n) for i in range(n)]
    for i, name in enumerate(names):
        part = vectors[i * shard_rows : (i + 1) * shard_rows].to(torch.float32).contiguous()
        with atomic_path(folder / name) as tmp:
            save_file({"vectors": part}, str(tmp), metadata={"first_row": str(i * shard_rows)})
    for stale in folder.glob("vectors-*.safetensors"):
        if stale.name not in names and ".tmp-" not in stale.name:
            stale.unlink()
    with atomic_path(folder / ITEMS) as tmp:
        pq.write_table(table, tmp)
    manifest = {
        "format": FORMAT,
        "num_items": rows,
        "dim": int(vectors.shape[1]) if vectors.ndim == 2 else 0,
        "shards": names,
        **info,
    }
    atomic_write_json(folder / MANIFEST, manifest)
    return folder


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise CorpusError(
            f"{folder}: not a complete embed output (no {MANIFEST}); run `vlm2vec embed` (it resumes) first"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise CorpusError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def read_store(folder: str | Path) -> tuple[torch.Tensor, pa.Table, dict[str, Any]]:
    """(vectors [rows, dim] float32, metadata table, manifest) of a complete embed output folder."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    parts = []
    for name in manifest["shards"]:
        path = folder / name
        if not path.is_file():
            raise CorpusError(f"{path}: shard listed in {MANIFEST} is missing")
        parts.append(load_file(str(path))["vectors"])
    vectors = torch.cat(parts) if parts else torch.empty(0, manifest["dim"])
    table = pq.read_table(folder / ITEMS)
    if vectors.shape[0] != table.num_rows or vectors.shape[0] != manifest["num_items"]:
        raise CorpusError(
            f"{folder}: {vectors.shape[0]} vectors, {table.num_rows} rows in {ITEMS}, "
            f"{manifest['num_items']} in {MANIFEST}: the folder is inconsistent; re-run embed"
        )
    return vectors, table, manifest
