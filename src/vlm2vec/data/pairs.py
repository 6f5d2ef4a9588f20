"""Custom training pairs from JSONL, CSV or parquet files, with a column mapping.

A cell of an image column may hold one relative path, a list of paths or nothing; a negative column
may hold one text or a list (with the image column parallel to it). Relative image paths are joined
onto `image_root` (default: the file's folder). Texts of rows that have images but no `<|image_k|>`
placeholder get them prepended, so a plain captions file works as is.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..config import PairSourceConfig
from .records import ColumnMap, PairSource


def _read_jsonl(path: Path) -> pa.Table:
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {lineno} is not valid JSON: {exc}") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}: line {lineno} must be a JSON object, got {type(row).__name__}")
            rows.append(row)
    return pa.Table.from_pylist(rows)


def read_table(path: str | Path) -> pa.Table:
    """Read a pairs file by its extension: .jsonl/.json (one object a line), .csv, .parquet."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            return _read_jsonl(path)
        if suffix == ".csv":
            # every column as text: paths and captions must not be parsed as numbers or dates
            with path.open(encoding="utf-8", newline="") as f:
                names = next(csv.reader(f), [])
            convert = pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False
            )
            return pacsv.read_csv(path, convert_options=convert)
        if suffix == ".parquet":
            return pq.read_table(path)
    except pa.ArrowException as exc:
        raise ValueError(f"{path}: cannot parse: {exc}") from exc
    raise ValueError(f"{path}: unsupported pairs file type '{suffix}' (use .jsonl, .csv or .parquet)")


def read_pairs(cfg: PairSourceConfig) -> PairSource:
    """A `PairSource` for one custom pairs file described by `cfg`."""
    if not cfg.path:
        raise ValueError(f"pairs source '{cfg.name}': path is empty")
    table = read_table(cfg.path)
    defaults = PairSourceConfig()

    def image_column(name: str | None, default: str | None) -> str | None:
        # the default image column names may be absent (text-only pairs); a name the user chose may not
        return None if name == default and name not in table.column_names else name

    columns = ColumnMap(
        qry_text=cfg.qry_text,
        pos_text=cfg.pos_text,
        qry_image=image_column(cfg.qry_image, defaults.qry_image),
        pos_image=image_column(cfg.pos_image, defaults.pos_image),
        neg_text=cfg.neg_text,
        neg_image=cfg.neg_image,
    )
    image_root = cfg.image_root or str(Path(cfg.path).parent)
    return PairSource(
        cfg.name,
        table,
        columns,
        image_root=image_root,
        weight=cfg.weight,
        origin=cfg.path,
        auto_placeholder=True,
    )
