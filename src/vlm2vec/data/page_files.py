"""Document pages stored inside hub parquet files, written once to files named by their content.

The ColPali train set and VisRAG keep each page image in the parquet (`image`: a struct of `bytes`
and `path`, as the hub's Image feature stores it). Training rows travel as paths (decoded lazily in
DataLoader workers, and compared by path for false-negative masking), so each page is written once
under a page folder as `<sha1 of its bytes>.<png|jpg|img>`: two rows with the same page share one
file, and a rerun finds the files there. Per parquet shard, the text columns and page file names are kept
in a small manifest (`<page folder>/manifest/<shard>.parquet`, stamped with the shard's size and
mtime), so a later start reads neither the page bytes again nor re-hashes them. Every write is atomic.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic_files import atomic_path
from ..errors import DataError
from .records import BadRowError

#: the column of the written page path in the tables `read_page_table` returns
PAGE_COLUMN = "page"
_STAMP = b"vlm2vec.shard_stamp"


def page_suffix(blob: bytes) -> str:
    """File suffix from the image's magic bytes (PIL opens by content, the suffix is for people)."""
    if blob.startswith(b"\x89PNG"):
        return ".png"
    if blob.startswith(b"\xff\xd8"):
        return ".jpg"
    return ".img"


def page_blob(cell: Any) -> bytes | None:
    """The image bytes of a parquet cell: an Image struct (`bytes`, `path`) or plain binary."""
    if isinstance(cell, dict):
        cell = cell.get("bytes")
    return cell if isinstance(cell, (bytes, bytearray)) and cell else None


def write_page(page_dir: Path, blob: bytes) -> Path:
    """The file holding `blob` under `page_dir`, written unless a file of that content is there."""
    path = page_dir / f"{hashlib.sha1(blob).hexdigest()}{page_suffix(blob)}"
    if not path.is_file():
        with atomic_path(path) as tmp:
            tmp.write_bytes(blob)
    return path


def _stamp(shard: Path) -> bytes:
    stat = shard.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}".encode()


def _shard_table(
    source: str, shard: Path, columns: Sequence[str], page_dir: Path, first_row: int, skip_bad_rows: bool
) -> pa.Table:
    """Text columns of one shard plus the path of each row's page (written here)."""
    try:
        table = pq.read_table(shard, columns=[*columns, "image"])
    except (OSError, pa.ArrowException) as exc:
        raise DataError(
            f"source '{source}': cannot read {shard} (needs columns {[*columns, 'image']}): {exc}"
        ) from None
    pages = []
    for i, cell in enumerate(table.column("image").to_pylist()):
        blob = page_blob(cell)
        if blob is not None:
            pages.append(write_page(page_dir, blob).name)
            continue
        row = first_row + i
        if not skip_bad_rows:
            raise BadRowError(
                source, row, f"no page image bytes in column 'image' of {shard.name}", str(shard)
            )
        # never written: the row is reported and replaced when it is loaded, as any missing image
        pages.append(f"missing/row-{row + 1}.png")
    return table.drop_columns(["image"]).append_column(PAGE_COLUMN, pa.array(pages, pa.string()))


def read_page_table(
    source: str,
    shards: Sequence[Path],
    columns: Sequence[str],
    page_dir: Path,
    *,
    skip_bad_rows: bool = False,
) -> pa.Table:
    """`columns` of all `shards` (in order) plus `page`: each row's page file, relative to `page_dir`.

    A shard whose manifest matches its size and mtime is not read again. A row without image bytes
    raises `BadRowError` naming source, row (from 1, over all shards) and shard, or, with
    `skip_bad_rows`, points at a page file that is never written, so loading counts it as skipped.
    """
    tables = []
    first_row = 0
    for shard in shards:
        manifest = page_dir / "manifest" / f"{shard.stem}.parquet"
        stamp = _stamp(shard)
        table = None
        if manifest.is_file():
            cached = pq.read_table(manifest)
            if (cached.schema.metadata or {}).get(_STAMP) == stamp:
                table = cached.replace_schema_metadata(None)
        if table is None:
            table = _shard_table(source, shard, columns, page_dir, first_row, skip_bad_rows)
            with atomic_path(manifest) as tmp:
                pq.write_table(table.replace_schema_metadata({_STAMP: stamp}), tmp)
        tables.append(table)
        first_row += table.num_rows
    return pa.concat_tables(tables)


def default_page_dir(clone: str | os.PathLike, page_cache_dir: str | None, source: str) -> Path:
    """`<page_cache_dir>/<source>` when set, else `<clone>/pages`."""
    return Path(page_cache_dir) / source if page_cache_dir else Path(clone) / "pages"
