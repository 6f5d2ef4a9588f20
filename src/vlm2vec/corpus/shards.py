"""A complete embed output folder opened for streaming: its shards checked up front, then read one by one.

Search, indexing and mining walk a corpus shard by shard, so memory holds one shard whatever the corpus
size. Opening reads only the manifest and each shard's header, and refuses, in one line naming the file,
what would give wrong results later: a half-written folder, a listed shard that is missing, shards of
mixed dtypes or of another width than the manifest, and row counts that do not add up.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from .sources import CorpusError
from .store import ITEMS, MANIFEST, read_manifest


@dataclass(frozen=True)
class ShardInfo:
    path: Path
    first_row: int  # format 1 shards (no `rows` tensor) hold rows first_row.. in item order
    num_rows: int
    has_rows: bool


@dataclass(frozen=True)
class ShardFolder:
    """The checked shards of one embed output; `fingerprint` names the model that wrote them."""

    folder: Path
    manifest: dict[str, Any]
    shards: list[ShardInfo]
    dim: int
    dtype: str

    @property
    def num_items(self) -> int:
        return int(self.manifest["num_items"])

    @property
    def fingerprint(self) -> str | None:
        return self.manifest.get("model_fingerprint")

    @classmethod
    def open(cls, folder: str | Path) -> ShardFolder:
        folder = Path(folder)
        manifest = read_manifest(folder)
        infos, dtypes, start = [], {}, 0
        for name in manifest["shards"]:
            path = folder / name
            if not path.is_file():
                raise CorpusError(f"{path}: shard listed in {MANIFEST} is missing; re-run embed")
            try:
                with safe_open(str(path), framework="pt") as f:
                    part = f.get_slice("vectors")
                    shape, dtype = part.get_shape(), str(part.get_dtype()).lower()
                    has_rows = "rows" in f.keys()
            except Exception as exc:
                raise CorpusError(f"{path}: not a readable vector shard ({exc}); re-run embed") from None
            if len(shape) != 2 or shape[1] != manifest["dim"]:
                raise CorpusError(f"{path}: vectors of shape {shape}, {MANIFEST} says dim {manifest['dim']}")
            dtypes.setdefault(dtype, path)
            if len(dtypes) > 1:
                first = next(iter(dtypes))
                raise CorpusError(
                    f"{path}: mixed dtypes in one folder ({dtype} here, {first} in {dtypes[first].name}); re-run embed"
                )
            infos.append(ShardInfo(path, start, shape[0], has_rows))
            start += shape[0]
        if start != manifest["num_items"]:
            raise CorpusError(
                f"{folder / MANIFEST}: {manifest['num_items']} items but its shards hold {start} vectors; re-run embed"
            )
        dtype = next(iter(dtypes), "f32")
        return cls(folder, manifest, infos, int(manifest["dim"]), "float16" if dtype == "f16" else "float32")

    def items_table(self) -> pa.Table:
        """The items' metadata (row order), checked against the vectors' count."""
        table = pq.read_table(self.folder / ITEMS)
        if table.num_rows != self.num_items:
            raise CorpusError(
                f"{self.folder / ITEMS}: {table.num_rows} rows but {self.num_items} vectors in {MANIFEST}: "
                "the folder is inconsistent; re-run embed"
            )
        return table

    def iter_shards(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(item rows int64 [n], vectors [n, dim] in the storage dtype) per shard, one shard in memory."""
        for info in self.shards:
            data = load_file(str(info.path))
            rows = (
                data["rows"]
                if info.has_rows
                else torch.arange(info.first_row, info.first_row + info.num_rows)
            )
            yield rows, data["vectors"]


def read_store(folder: str | Path) -> tuple[torch.Tensor, pa.Table, dict[str, Any]]:
    """(vectors [rows, dim] float32 in item order, metadata table, manifest) of a complete embed output.
    Holds the whole corpus in memory; search streams it instead (`ShardFolder.iter_shards`)."""
    shards = ShardFolder.open(folder)
    vectors = torch.empty(shards.num_items, shards.dim, dtype=torch.float32)
    for rows, part in shards.iter_shards():
        vectors[rows] = part.to(torch.float32)
    return vectors, shards.items_table(), shards.manifest
