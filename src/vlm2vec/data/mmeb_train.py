"""Reader for a local clone of MMEB-train (`TIGER-Lab/MMEB-train`).

Layout: `<root>/<Subset>/<split>-NNNNN-of-NNNNN.parquet` with columns `qry`, `qry_image_path`,
`pos_text`, `pos_image_path`, `neg_text`, `neg_image_path`; image paths are relative to an image root
(the clone itself unless told otherwise). Each subset becomes one `PairSource`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import DataConfig, choices_of
from ..errors import DataError, DataNotFoundError
from .records import ColumnMap, PairSource

MMEB_COLUMNS = ColumnMap(
    qry_text="qry",
    qry_image="qry_image_path",
    pos_text="pos_text",
    pos_image="pos_image_path",
    neg_text="neg_text",
    neg_image="neg_image_path",
)


def subset_files(root: Path, subset: str, split: str) -> list[Path]:
    return sorted((root / subset).glob(f"{split}-*.parquet"))


def available_subsets(root: str | os.PathLike, split: str = "original") -> list[str]:
    """Subset folders under `root` that hold parquet files for `split`, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"MMEB-train folder not found: {root}")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and subset_files(root, p.name, split))


def read_subset(
    root: Path,
    subset: str,
    split: str,
    *,
    image_root: Path,
    max_rows: int | None,
    weight: float,
    outside_root: bool = False,
) -> PairSource:
    files = subset_files(root, subset, split)
    if not files:
        raise DataNotFoundError(f"MMEB-train subset '{subset}': no {split}-*.parquet under {root / subset}")
    try:
        table = pa.concat_tables([pq.read_table(f) for f in files])
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"MMEB-train subset '{subset}': cannot read {files}: {exc}") from exc
    if max_rows is not None:
        table = table.slice(0, max_rows)
    has_negs = "neg_text" in table.column_names
    columns = MMEB_COLUMNS if has_negs else ColumnMap("qry", "pos_text", "qry_image_path", "pos_image_path")
    return PairSource(
        subset,
        table,
        columns,
        image_root=image_root,
        weight=weight,
        origin=str(root / subset),
        outside_root=outside_root,
    )


def read_mmeb_train(
    root: str | os.PathLike,
    *,
    subsets: Sequence[str] = (),
    split: str = "original",
    image_root: str | os.PathLike | None = None,
    max_rows_per_subset: int | None = None,
    weights: Mapping[str, float] | None = None,
    outside_root: bool = False,
    max_rows: Mapping[str, int] | None = None,
) -> list[PairSource]:
    """One `PairSource` per chosen subset (all found when `subsets` is empty), first rows if capped
    (`max_rows[subset]`, else `max_rows_per_subset`)."""
    splits = choices_of(DataConfig, "split")
    if split not in splits:
        raise DataError(f"MMEB-train split must be one of {splits}, got {split!r}")
    root = Path(root)
    found = available_subsets(root, split)
    chosen = list(subsets) or found
    if not chosen:
        raise DataNotFoundError(f"MMEB-train: no subset with {split}-*.parquet files under {root}")
    unknown = [s for s in chosen if s not in found]
    if unknown:
        raise DataNotFoundError(
            f"MMEB-train: subset(s) {unknown} not found for split '{split}' under {root}; available: {found}"
        )
    weights, max_rows = dict(weights or {}), dict(max_rows or {})
    for key, table in (("subset_weights", weights), ("subset_max_rows", max_rows)):
        stray = [k for k in table if k not in chosen]
        if stray:
            raise DataError(f"data.{key} names subset(s) {stray} that are not being read; chosen: {chosen}")
    if max_rows_per_subset is not None and max_rows_per_subset <= 0:
        raise DataError(f"data.max_rows_per_subset must be positive, got {max_rows_per_subset}")
    image_root = Path(image_root) if image_root else root
    return [
        read_subset(
            root,
            s,
            split,
            image_root=image_root,
            max_rows=max_rows.get(s, max_rows_per_subset),
            weight=weights.get(s, 1.0),
            outside_root=outside_root,
        )
        for s in chosen
    ]
