"""Reader of the 24 MMEB-V2 visual-document tasks: BEIR clones (queries, corpus, qrels) and page images.

The reference's rules are kept and every application of one is counted in `TaskData.counts`: qrels
with score <= 0 are dropped; a repeated (query, page) pair keeps its highest score; the relevant
pages of a query are in qrels file order; the ranking pool is every corpus id (first occurrence of a
duplicate id kept) followed by qrels pages absent from the corpus. A query without any relevant page
makes the reference fail for the whole dataset; here it is an error naming the queries, unless
`skip_unjudged` drops them (counted). Page images are `<corpus-id>.png` (VisRAG:
`<first 50 chars of the file stem>_<8 hex of md5(file name)><ext>`) in the release's page folder;
pages that are absent are written once from the corpus's `image` column (atomically, so an
interrupted run resumes), as the reference does.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Hashable, Iterable
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from ..atomic_files import atomic_path
from ..errors import DataError
from .layouts import clone_identity, read_split, require_columns, split_files
from .records import Candidate, Query, TaskData
from .tasks import Task
from .versions import OLD_PAGE_SOURCES, page_version

QRELS_DROPPED = "qrels with score <= 0 (dropped)"
QRELS_REPEATED = "repeated (query, page) qrels (highest score kept)"
DUPLICATE_PAGES = "duplicate corpus ids (first kept)"
ABSENT_PAGES = "qrels pages absent from the corpus (ranked, as the reference does)"
UNJUDGED = "queries without relevant pages (skipped)"
PAGES_WRITTEN = "page images written from the corpus image column"


def page_file(task: Task, image_root: Path, corpus_id: Hashable) -> Path:
    """Where the release (or the reference's page cache) keeps the image of one corpus page."""
    if task.parser != "visrag":
        return image_root / f"{corpus_id}.png"
    name = str(corpus_id)
    stem, ext = os.path.splitext(name)
    return image_root / f"{stem[:50]}_{hashlib.md5(name.encode('utf-8')).hexdigest()[:8]}{ext}"


def read_qrels(data: TaskData, rows: list[dict]) -> dict[Hashable, dict[Hashable, float]]:
    """query id -> {page id: grade}, by the reference's rules (see the module docstring)."""
    qrels: dict[Hashable, dict[Hashable, float]] = {}
    for r in rows:
        score = float(r["score"])
        if score <= 0:
            data.count(QRELS_DROPPED)
            continue
        pages = qrels.setdefault(r["query-id"], {})
        if r["corpus-id"] in pages:
            data.count(QRELS_REPEATED)
            score = max(score, pages[r["corpus-id"]])
        pages[r["corpus-id"]] = score
    return qrels


def _pool(data: TaskData, corpus_ids: list, qrels: dict) -> list[Hashable]:
    pool = list(dict.fromkeys(corpus_ids))
    if len(pool) < len(corpus_ids):
        data.count(DUPLICATE_PAGES, len(corpus_ids) - len(pool))
    known = set(pool)
    absent = [p for pages in qrels.values() for p in pages if p not in known]
    absent = list(dict.fromkeys(absent))
    if absent:
        data.count(ABSENT_PAGES, len(absent))
    return pool + absent


def _queries(data: TaskData, rows: list[dict], qrels: dict, skip_unjudged: bool) -> list[Query]:
    unjudged = [r["query-id"] for r in rows if not qrels.get(r["query-id"])]
    if unjudged and not skip_unjudged:
        raise DataError(
            f"task {data.task.name!r}: {len(unjudged)} queries have no relevant page in the qrels "
            f"(first: {unjudged[:5]}); the reference fails on them. Skip them explicitly to evaluate the rest"
        )
    if unjudged:
        data.count(UNJUDGED, len(unjudged))
    return [
        Query(i, str(r["query"]), dict(qrels[r["query-id"]]))
        for i, r in enumerate(rows, 1)
        if qrels.get(r["query-id"])
    ]


def _image_batches(files: list[Path]) -> Iterable[tuple[Hashable, dict | None]]:
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(columns=["corpus-id", "image"], batch_size=64):
            yield from zip(batch.column(0).to_pylist(), batch.column(1).to_pylist())


def write_missing_pages(data: TaskData, files: list[Path], image_root: Path, missing: set) -> None:
    """Write the pages in `missing` from the corpus `image` column (bytes of a hub Image feature)."""
    fmt = Image.registered_extensions()
    for cid, image in _image_batches(files):
        if cid not in missing:
            continue
        target = page_file(data.task, image_root, cid)
        blob = (image or {}).get("bytes") if isinstance(image, dict) else None
        if not blob:
            raise DataError(
                f"task {data.task.name!r}: corpus page {cid!r} has no image bytes in {str(files[0])!r}"
            )
        try:
            with Image.open(io.BytesIO(blob)) as img, atomic_path(target) as tmp:
                img.save(tmp, format=fmt.get(target.suffix.lower(), "PNG"))
        except OSError as exc:
            raise DataError(
                f"task {data.task.name!r}: corpus page {cid!r} is not a readable image: {exc}"
            ) from exc
        missing.discard(cid)
        data.count(PAGES_WRITTEN)


def read_visdoc_task(
    task: Task,
    clone: Path,
    image_root: Path,
    layout: str = "reference",
    *,
    allow_old: bool = False,
    skip_unjudged: bool = False,
    write_pages: bool = True,
) -> TaskData:
    """Read one visual-document task; every page of the pool must exist (or be written) as a file."""
    identity = clone_identity(clone)
    version = identity
    if task.name in OLD_PAGE_SOURCES:
        version += f"#{page_version(task.name, identity, allow_old)}"
    queries, qfiles = read_split(task.name, clone, "queries", task.split)
    qrels_rows, rfiles = read_split(task.name, clone, "qrels", task.split)
    corpus_files = split_files(clone, "corpus", task.split)
    require_columns(task.name, queries, ("query-id", "query"), qfiles)
    require_columns(task.name, qrels_rows, ("query-id", "corpus-id", "score"), rfiles)
    if not corpus_files:
        raise DataError(f"task {task.name!r}: no corpus/{task.split}-*.parquet in {str(clone)!r}")
    data = TaskData(task, [], {}, version, layout, files=qfiles + rfiles + corpus_files)
    qrels = read_qrels(data, qrels_rows)
    corpus_ids = [
        cid for path in corpus_files for cid in pq.read_table(path, columns=["corpus-id"])[0].to_pylist()
    ]
    pool = _pool(data, corpus_ids, qrels)
    data.queries = _queries(data, queries, qrels, skip_unjudged)
    missing = {cid for cid in pool if not page_file(task, image_root, cid).is_file()}
    if missing and write_pages:
        write_missing_pages(data, corpus_files, image_root, missing)
    if missing:
        cid = next(c for c in pool if c in missing)
        where = "absent from the corpus" if cid not in set(corpus_ids) else "not written"
        raise DataError(
            f"task {task.name!r}: {len(missing)} page images missing, e.g. page {cid!r} ({where}): "
            f"{str(page_file(task, image_root, cid))!r}"
        )
    data.candidates = {cid: Candidate(cid, image=page_file(task, image_root, cid)) for cid in pool}
    return data
