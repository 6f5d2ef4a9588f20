"""Read one MMEB-eval dataset folder: `<data_dir>/<Dataset>/test-*.parquet` + images under an image root.

Columns: `qry_text`, `qry_img_path` (str, empty or null = no image), `tgt_text` (list) and
`tgt_img_path` (list, parallel to tgt_text). Candidate 0 of every query is its positive.

Image paths are relative to an image root. With `image_root` unset we try `<data_dir>/eval_images`
(the reference's `unzip images.zip -d eval_images/`), `<data_dir>/eval_images/images` (a zip whose
inside is `images/<Dataset>/...`), `<data_dir>/images` and `<data_dir>`, and keep the first one holding
the dataset's first image. Every referenced image is checked up front (and its size and mtime kept
for the cache key), so a missing file fails before any encoding with its dataset, row, column and
path in the message; every row is validated before the dataset is encoded.

A `data_dir` that is not an MMEB-eval folder is an error, never an empty or merged result: a folder
with no dataset folder, the folder one level above the clone (or a hub cache folder), which would
merge every dataset into one, and a single dataset's folder are each detected and the message names
the folder to pass.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..backbones.placeholders import check_placeholders
from ..errors import DatasetError
from .registry import MMEB_DATASETS

COLUMNS = ("qry_text", "qry_img_path", "tgt_text", "tgt_img_path")
#: image roots tried under data_dir, in order, when eval.image_root is unset
DEFAULT_IMAGE_SUBDIRS = ("eval_images", "eval_images/images", "images", "")


class MissingDatasetError(DatasetError):
    """The dataset's folder (or its parquet files) does not exist."""


@dataclass(frozen=True)
class EvalExample:
    """One query and its own candidate list; image paths are relative ('' = no image)."""

    qry_text: str
    qry_img: str
    tgt_texts: tuple[str, ...]
    tgt_imgs: tuple[str, ...]


@dataclass
class EvalDataset:
    name: str
    examples: list[EvalExample]
    image_root: Path
    files: list[Path]
    #: image path -> "size:mtime_ns" of every referenced image (filled by `check_images`)
    image_stamps: dict[str, str] = field(default_factory=dict)


def parquet_files(data_dir: str | Path, name: str) -> list[Path]:
    """The parquet files of dataset `name` (test split preferred); empty when the folder is absent."""
    folder = Path(data_dir) / name
    if not folder.is_dir():
        return []
    return sorted(folder.rglob("test*.parquet")) or sorted(folder.rglob("*.parquet"))


def find_datasets(data_dir: str | Path) -> list[str]:
    """Names of the folders under `data_dir` that hold parquet files (image folders are skipped)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise MissingDatasetError(f"eval.data_dir {str(root)!r} does not exist")
    skip = {d.split("/")[0] for d in DEFAULT_IMAGE_SUBDIRS if d}
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and p.name not in skip and parquet_files(root, p.name)
    )


def check_data_dir(data_dir: str | Path, found: list[str]) -> None:
    """Fail on a data_dir that is not an MMEB-eval folder, naming the folder to pass instead.

    Catches: a folder holding no dataset folder (empty or unrelated); the folder one level above the
    clone or a hub cache (`datasets--TIGER-Lab--MMEB-eval/snapshots/<hash>/<Dataset>/...`), where a
    folder found here holds MMEB dataset folders below it; and one dataset's own folder.
    """
    root = Path(data_dir)
    below: dict[str, set[str]] = {}  # folder below data_dir -> the MMEB dataset folders in it
    for name in found:
        if name in MMEB_DATASETS:
            continue
        for f in parquet_files(root, name):
            if f.parent.name in MMEB_DATASETS and f.parent != root / name:
                below.setdefault(str(f.parent.parent), set()).add(f.parent.name)
    nested = sorted(below, key=lambda folder: (-len(below[folder]), folder))  # the fullest first
    if nested:
        raise DatasetError(
            f"eval.data_dir {str(root)!r} is above the MMEB-eval folder: MMEB datasets were found under "
            f"{', '.join(repr(n) for n in nested)}; pass eval.data_dir={nested[0]}"
        )
    if found:
        return
    if any(root.glob("*.parquet")) and root.name in MMEB_DATASETS:
        raise DatasetError(
            f"eval.data_dir {str(root)!r} is the folder of one dataset ({root.name}); pass its parent: "
            f"eval.data_dir={root.parent} (and eval.datasets=[{root.name}] to run only it)"
        )
    raise DatasetError(
        f"eval.data_dir {str(root)!r} holds no dataset folder (<Dataset>/test-*.parquet): "
        "point it at a local clone of TIGER-Lab/MMEB-eval"
    )


def _check_placeholders(name: str, row: int, column: str, text: str, has_image: bool) -> None:
    """The processors' own placeholder check, run up front so a bad row fails before any encoding."""
    try:
        check_placeholders(text, int(has_image))
    except ValueError as exc:
        raise DatasetError(f"dataset {name!r}, row {row}, column {column!r}: {exc}") from None


def _text(name: str, row: int, column: str, value: object) -> str:
    """A text or path cell: str, or null/'' for none; anything else is a bad row."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DatasetError(
            f"dataset {name!r}, row {row}, column {column!r}: expected a string, got {type(value).__name__} "
            f"{value!r}"
        )
    return value


def _read_table(name: str, file: Path) -> dict[str, list]:
    """The four columns of one parquet file; an unreadable or incomplete file is an error naming it."""
    try:
        schema_names = pq.read_schema(file).names
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"dataset {name!r}: cannot read parquet file {str(file)!r}: {exc}") from None
    missing = [c for c in COLUMNS if c not in schema_names]
    if missing:
        raise DatasetError(
            f"dataset {name!r}, file {str(file)!r}: missing column(s) {missing}; found {schema_names}"
        )
    try:
        return pq.read_table(file, columns=list(COLUMNS)).to_pydict()
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"dataset {name!r}: cannot read parquet file {str(file)!r}: {exc}") from None


def _read_examples(name: str, files: list[Path]) -> list[EvalExample]:
    examples: list[EvalExample] = []
    for file in files:
        table = _read_table(name, file)
        for i in range(len(table["qry_text"])):
            row = len(examples) + 1  # 1-based, counted over the dataset's files
            texts, imgs = table["tgt_text"][i], table["tgt_img_path"][i]
            if not isinstance(texts, list) or not isinstance(imgs, list):
                raise DatasetError(f"dataset {name!r}, row {row}: tgt_text and tgt_img_path must be lists")
            if len(texts) != len(imgs) or not texts:
                raise DatasetError(
                    f"dataset {name!r}, row {row}: tgt_text has {len(texts)} entries, tgt_img_path {len(imgs)}; "
                    "they must be equal and non-zero"
                )
            qry_text = _text(name, row, "qry_text", table["qry_text"][i])
            qry_img = _text(name, row, "qry_img_path", table["qry_img_path"][i])
            tgt_texts = tuple(_text(name, row, f"tgt_text[{j}]", t) for j, t in enumerate(texts))
            tgt_imgs = tuple(_text(name, row, f"tgt_img_path[{j}]", p) for j, p in enumerate(imgs))
            _check_placeholders(name, row, "qry_text", qry_text, bool(qry_img))
            for j, (t, p) in enumerate(zip(tgt_texts, tgt_imgs)):
                _check_placeholders(name, row, f"tgt_text[{j}]", t, bool(p))
            examples.append(EvalExample(qry_text, qry_img, tgt_texts, tgt_imgs))
    return examples


def _first_image(examples: list[EvalExample]) -> str | None:
    return next((p for ex in examples for p in (ex.qry_img, *ex.tgt_imgs) if p), None)


def resolve_image_root(
    name: str, data_dir: str | Path, image_root: str | Path | None, examples: list[EvalExample]
) -> Path:
    """The configured root, or the first default root that holds the dataset's first image."""
    first = _first_image(examples)
    if image_root is not None:
        root = Path(image_root)
        if first is not None and not (root / first).is_file():
            better = [root / sub for sub in ("images", "eval_images") if (root / sub / first).is_file()]
            if better:
                raise DatasetError(
                    f"dataset {name!r}: image {first!r} is not under eval.image_root {str(root)!r} but under "
                    f"{str(better[0])!r}; pass eval.image_root={better[0]}"
                )
        return root
    candidates = [Path(data_dir) / sub if sub else Path(data_dir) for sub in DEFAULT_IMAGE_SUBDIRS]
    if first is None:
        return candidates[-1]
    for root in candidates:
        if (root / first).is_file():
            return root
    raise DatasetError(
        f"dataset {name!r}: image {first!r} not found under any of {[str(c) for c in candidates]}; "
        "set eval.image_root (after `unzip images.zip -d <data_dir>/eval_images/` it is found by itself)"
    )


def check_images(ds: EvalDataset) -> None:
    """Fail on the first referenced image that does not exist, naming dataset, row, column and path;
    record every image's size and mtime (the cache key's image part) in `ds.image_stamps`."""
    stamps = ds.image_stamps
    for row, ex in enumerate(ds.examples, start=1):
        for column, path in (
            ("qry_img_path", ex.qry_img),
            *((f"tgt_img_path[{j}]", p) for j, p in enumerate(ex.tgt_imgs)),
        ):
            if not path or path in stamps:
                continue
            stamp = file_stamp(ds.image_root / path)
            if stamp is None:
                raise DatasetError(
                    f"dataset {ds.name!r}, row {row}, column {column!r}: image {path!r} not found under "
                    f"{str(ds.image_root)!r}"
                )
            stamps[path] = stamp


def file_stamp(path: str | os.PathLike) -> str | None:
    """ "size:mtime_ns" of a regular file (the image part of a cache key), None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}" if stat.S_ISREG(st.st_mode) else None


def load_eval_dataset(
    data_dir: str | Path,
    name: str,
    *,
    image_root: str | Path | None = None,
    max_queries: int | None = None,
    check: bool = True,
) -> EvalDataset:
    """Read, validate and (optionally) truncate one dataset; raises `MissingDatasetError` if absent."""
    files = parquet_files(data_dir, name)
    if not files:
        raise MissingDatasetError(f"dataset {name!r}: no parquet files under {str(Path(data_dir) / name)!r}")
    examples = _read_examples(name, files)
    if not examples:
        raise DatasetError(f"dataset {name!r}: no rows in {[str(f) for f in files]}")
    if max_queries is not None:
        examples = examples[:max_queries]
    ds = EvalDataset(name, examples, resolve_image_root(name, data_dir, image_root, examples), files)
    if check:
        check_images(ds)
    return ds
