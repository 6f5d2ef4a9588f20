"""Custom training pairs from JSONL, CSV or parquet files, with a column mapping.

A cell of an image column may hold one relative path, a list of paths or nothing; a negative column
may hold one text or a list (with the image column parallel to it). Relative image paths are joined
onto `image_root` (default: the file's folder) and must stay under it, unless
`data.image_paths_outside_root` allows absolute paths and `../`. Texts of rows that have images but no `<|image_k|>`
placeholder get them prepended, so a plain captions file works as is. A video column (`qry_video`,
`pos_video`) holds a frame folder or a list of frame files, resolved the same way; a text without a
`<|video_1|>` placeholder gets one.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..config import PairSourceConfig
from ..errors import DataError, DataNotFoundError
from ..text_files import utf8_lines
from .records import ColumnMap, PairSource


def _kind(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def _first_mixed_cell(path: Path, rows: list[dict], lines: list[int]) -> str:
    """Where a column first changes kind (a number among strings, a list among strings, ...)."""
    seen: dict[str, tuple[str, int]] = {}
    for row, lineno in zip(rows, lines):
        for column, value in row.items():
            kind = _kind(value)
            if kind is None:
                continue
            first = seen.setdefault(column, (kind, lineno))
            if first[0] != kind:
                return (
                    f"{path}: line {lineno}, column '{column}': a {kind} ({value!r:.60}), but line "
                    f"{first[1]} holds a {first[0]} there; every row needs the same type per column"
                )
    return ""


def _read_jsonl(path: Path) -> pa.Table:
    rows, lines = [], []
    for lineno, line in utf8_lines(path, DataError):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}: line {lineno}, column {exc.colno}: not valid JSON ({exc.msg})"
            ) from None
        if not isinstance(row, dict):
            raise DataError(
                f"{path}: line {lineno}, column 1: must be a JSON object, got {type(row).__name__}"
            )
        rows.append(row)
        lines.append(lineno)
    try:
        return pa.Table.from_pylist(rows)
    except pa.ArrowException as exc:
        raise DataError(_first_mixed_cell(path, rows, lines) or f"{path}: cannot parse: {exc}") from None


def read_table(path: str | Path) -> pa.Table:
    """Read a pairs file by its extension: .jsonl/.json (one object a line), .csv, .parquet."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"pairs file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            return _read_jsonl(path)
        if suffix == ".csv":
            # every column as text: paths and captions must not be parsed as numbers or dates
            header = next(utf8_lines(path, DataError), (1, ""))[1]
            names = next(csv.reader([header]), [])
            convert = pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False
            )
            return pacsv.read_csv(path, convert_options=convert)
        if suffix == ".parquet":
            return pq.read_table(path)
    except pa.ArrowException as exc:
        raise DataError(f"{path}: cannot parse: {exc}") from exc
    raise DataError(f"{path}: unsupported pairs file type '{suffix}' (use .jsonl, .csv or .parquet)")


def read_pairs(cfg: PairSourceConfig, *, outside_root: bool = False) -> PairSource:
    """A `PairSource` for one custom pairs file described by `cfg` (`outside_root`: allow image paths
    that are absolute or leave the image root)."""
    if not cfg.path:
        raise DataError(f"pairs source '{cfg.name}': path is empty")
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
        qry_video=cfg.qry_video,
        pos_video=cfg.pos_video,
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
        outside_root=outside_root,
    )
