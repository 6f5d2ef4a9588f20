"""`vlm2vec index`: a FAISS index over an embed output folder, built shard by shard, with its recall.

Kinds: `flat` (exact inner product), `ivf_flat` / `ivf_pq` (inverted lists of full vectors or of
product-quantised codes, trained on a sample) and `hnsw` (a graph). Vectors are added one shard at a
time; when the index would outgrow `index.max_part_bytes` it is cut into parts (`part-00000.faiss` +
the item rows it holds), searched one after another with a merged top-k. With faiss-gpu and
`index.device` auto/gpu, training and adding run on the GPU (HNSW has no GPU version: CPU). Beside the
parts, `index.json` holds the build settings, the model fingerprint and width of the vectors, the
corpus folder, and the recall@k of the index against exact search on held-out queries.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic_files import atomic_path, atomic_write_json
from ..config import Config, ConfigError, IndexConfig
from ..errors import UserError, import_extra
from .search import check_k, empty_topk, merge_topk, search_shards
from .shards import ShardFolder
from .sources import CorpusError

logger = logging.getLogger(__name__)

INDEX_FILE = "index.json"
INDEX_FORMAT = "vlm2vec-index/1"


def load_faiss() -> Any:
    return import_extra("faiss", needed_for="vlm2vec index / an index folder", extra="faiss")


def use_gpu(faiss: Any, device: str, kind: str) -> bool:
    """faiss-gpu present with a visible GPU, not refused by `device`, and a kind with a GPU version."""
    has_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    if device == "gpu" and not has_gpu:
        raise UserError(
            "index.device=gpu: this faiss has no GPU support or sees no GPU (pip install faiss-gpu)"
        )
    return has_gpu and device != "cpu" and kind != "hnsw"


def bytes_per_vector(ic: IndexConfig, dim: int) -> int:
    """About what one vector costs in the index (with its id), to decide where a part ends."""
    return {
        "flat": 4 * dim + 8,
        "ivf_flat": 4 * dim + 8,
        "ivf_pq": ic.pq_m * ic.pq_bits // 8 + 8,
        "hnsw": 4 * dim + 8 * ic.hnsw_m + 8,
    }[ic.kind]


def empty_index(faiss: Any, ic: IndexConfig, dim: int, nlist: int) -> Any:
    if ic.kind == "flat":
        return faiss.IndexFlatIP(dim)
    if ic.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, ic.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ic.ef_construction
        return index
    if ic.kind == "ivf_pq" and dim % ic.pq_m:
        raise UserError(f"index.pq_m={ic.pq_m} must divide the vectors' width {dim}")
    quantizer = faiss.IndexFlatIP(dim)
    if ic.kind == "ivf_flat":
        return faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    return faiss.IndexIVFPQ(quantizer, dim, nlist, ic.pq_m, ic.pq_bits, faiss.METRIC_INNER_PRODUCT)


def sample_rows(num_items: int, size: int, seed: int) -> np.ndarray:
    """`size` distinct item rows (sorted), drawn with `seed`."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_items, size=min(size, num_items), replace=False))


def gather_rows(shards: ShardFolder, wanted: np.ndarray) -> torch.Tensor:
    """The float32 vectors of the item rows `wanted` (sorted), read shard by shard."""
    out = torch.empty(len(wanted), shards.dim)
    for rows, vectors in shards.iter_shards():
        hit = np.isin(rows.numpy(), wanted)
        if hit.any():
            out[torch.from_numpy(np.searchsorted(wanted, rows.numpy()[hit]))] = vectors[
                torch.from_numpy(hit)
            ].float()
    return out


def train(faiss: Any, index: Any, shards: ShardFolder, ic: IndexConfig, gpu: Any) -> Any:
    """Train an IVF index on `ic.train_sample` vectors drawn from the corpus (other kinds: as is);
    `gpu`: the faiss GPU resources to train on, or None."""
    if not ic.kind.startswith("ivf"):
        return index
    sample = gather_rows(shards, sample_rows(shards.num_items, ic.train_sample, ic.seed)).numpy()
    if gpu is not None:
        index = faiss.index_cpu_to_gpu(gpu, 0, index)
    index.train(sample)
    return faiss.index_gpu_to_cpu(index) if gpu is not None else index


def build_parts(shards: ShardFolder, ic: IndexConfig, out: Path) -> list[dict[str, Any]]:
    """Add the corpus shard by shard into trained copies of the index, cutting a part whenever the next
    shard would take it over `max_part_bytes`; each part is written and dropped before the next."""
    faiss = load_faiss()
    # kept alive for the whole build: faiss's GPU indexes hold a pointer to their resources
    gpu = faiss.StandardGpuResources() if use_gpu(faiss, ic.device, ic.kind) else None
    nlist = ic.nlist or max(1, min(shards.num_items // 39, int(4 * shards.num_items**0.5)))
    trained = train(faiss, empty_index(faiss, ic, shards.dim, nlist), shards, ic, gpu)
    per_vector = bytes_per_vector(ic, shards.dim)
    parts: list[dict[str, Any]] = []
    index, rows_held = None, []

    def flush() -> None:
        name = f"part-{len(parts):05d}"
        with atomic_path(out / f"{name}.faiss") as tmp:
            faiss.write_index(faiss.index_gpu_to_cpu(index) if gpu is not None else index, str(tmp))
        with atomic_path(out / f"{name}.rows.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, np.concatenate(rows_held))
        parts.append({"index": f"{name}.faiss", "rows": f"{name}.rows.npy", "num_items": int(index.ntotal)})

    for rows, vectors in shards.iter_shards():
        if index is not None and (index.ntotal + len(rows)) * per_vector > ic.max_part_bytes:
            flush()
            index, rows_held = None, []
        if index is None:
            index = faiss.clone_index(trained)
            if gpu is not None:
                index = faiss.index_cpu_to_gpu(gpu, 0, index)
        index.add(vectors.float().contiguous().numpy())
        rows_held.append(rows.numpy())
    if index is not None:
        flush()
    return parts


@dataclass
class IndexFolder:
    """A built index: its parts searched one after another, ids mapped to item rows, top-k merged. A
    single part is read once and kept (it fits in memory by construction); several are read per search."""

    folder: Path
    meta: dict[str, Any]
    _kept: list[tuple[Any, np.ndarray]] = dataclasses.field(default_factory=list, repr=False)

    def parts(self) -> Iterator[tuple[Any, np.ndarray]]:
        """(faiss index, item rows of its ids) per part."""
        if self._kept:
            yield from self._kept
            return
        faiss = load_faiss()
        for part in self.meta["parts"]:
            loaded = (faiss.read_index(str(self.folder / part["index"])), np.load(self.folder / part["rows"]))
            if len(self.meta["parts"]) == 1:
                self._kept.append(loaded)
            yield loaded

    @classmethod
    def open(cls, folder: str | Path) -> IndexFolder:
        folder = Path(folder)
        path = folder / INDEX_FILE
        if not path.is_file():
            raise CorpusError(f"{folder}: no {INDEX_FILE}; build it with `vlm2vec index` first")
        meta = json.loads(path.read_text())
        if meta.get("format") != INDEX_FORMAT:
            raise CorpusError(f"{path}: format {meta.get('format')!r}, expected {INDEX_FORMAT!r}")
        for part in meta["parts"]:
            for key in ("index", "rows"):
                if not (folder / part[key]).is_file():
                    raise CorpusError(
                        f"{folder / part[key]}: listed in {INDEX_FILE} but missing; rebuild the index"
                    )
        return cls(folder, meta)

    def corpus(self) -> ShardFolder:
        """The shard folder the index was built from, refused if it no longer holds as many items."""
        shards = ShardFolder.open(self.meta["corpus_dir"])
        if shards.num_items != self.meta["num_items"]:
            raise CorpusError(
                f"{self.folder / INDEX_FILE}: built over {self.meta['num_items']} items, but "
                f"{shards.folder / 'manifest.json'} now holds {shards.num_items}; rebuild the index"
            )
        return shards

    def search(
        self, queries: torch.Tensor, k: int, *, nprobe: int | None = None, ef_search: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, item rows) [Nq, min(k, items)], best first; padding -1 where a part finds fewer."""
        best = empty_topk(queries.shape[0])
        q = queries.float().contiguous().numpy()
        for index, rows in self.parts():
            if hasattr(index, "nprobe"):
                index.nprobe = nprobe or self.meta["settings"]["nprobe"]
            if hasattr(index, "hnsw"):
                index.hnsw.efSearch = ef_search or self.meta["settings"]["ef_search"]
            scores, ids = index.search(q, min(k, index.ntotal))
            found = np.where(ids >= 0, rows[np.clip(ids, 0, None)], -1)
            scores = np.where(ids >= 0, scores, -np.inf)
            best = merge_topk(best, (torch.from_numpy(scores), torch.from_numpy(found)), k)
        return best


def recall_at_k(index: IndexFolder, shards: ShardFolder, ic: IndexConfig) -> dict[str, Any]:
    """Recall@k of the index against exact search, on corpus vectors outside the training sample."""
    k = min(ic.recall_k, shards.num_items)
    train_rows = sample_rows(shards.num_items, ic.train_sample, ic.seed) if ic.kind.startswith("ivf") else []
    rest = np.setdiff1d(np.arange(shards.num_items), train_rows)
    pool = rest if len(rest) else np.arange(shards.num_items)
    held = np.sort(
        np.random.default_rng(ic.seed + 1).choice(pool, size=min(ic.recall_queries, len(pool)), replace=False)
    )
    queries = gather_rows(shards, held)
    _, exact = search_shards(queries, shards, k)
    index.search(queries[:1], k)  # reads a single part once, so the timing is of searching alone
    t0 = time.perf_counter()
    _, approx = index.search(queries, k)
    seconds = time.perf_counter() - t0
    hits = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, exact))
    return {
        "k": k,
        "queries": len(held),
        "recall": hits / max(1, k * len(held)),
        "queries_per_s": len(held) / max(seconds, 1e-9),
    }


def build_index(ic: IndexConfig) -> Path:
    """Build the index `ic` asks for into `ic.output_dir`; `index.json` (written last) says how."""
    if not ic.corpus_dir:
        raise ConfigError(
            "vlm2vec index needs index.corpus_dir (an `embed` output folder)", key="index.corpus_dir"
        )
    shards = ShardFolder.open(ic.corpus_dir)
    check_k(ic.recall_k, shards.num_items, shards.folder)
    out = Path(ic.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / INDEX_FILE).unlink(missing_ok=True)  # incomplete until the new index.json lands
    t0 = time.perf_counter()
    parts = build_parts(shards, ic, out)
    meta = {
        "format": INDEX_FORMAT,
        "kind": ic.kind,
        "settings": dataclasses.asdict(ic),
        "corpus_dir": str(Path(ic.corpus_dir).resolve()),
        "model_fingerprint": shards.fingerprint,
        "dim": shards.dim,
        "num_items": shards.num_items,
        "parts": parts,
        "build_seconds": round(time.perf_counter() - t0, 3),
    }
    meta["recall"] = recall_at_k(IndexFolder(out, meta), shards, ic)
    listed = {p[key] for p in parts for key in ("index", "rows")}
    for stale in out.glob("part-*"):
        if stale.name not in listed and ".tmp-" not in stale.name:
            stale.unlink()
    atomic_write_json(out / INDEX_FILE, meta)
    return out


def run_index(cfg: Config) -> Path:
    """Entry point of `vlm2vec index`."""
    out = build_index(cfg.index)
    recall = json.loads((out / INDEX_FILE).read_text())["recall"]
    print(
        f"built a {cfg.index.kind} index into {out}: recall@{recall['k']} {recall['recall']:.4f} "
        f"vs exact on {recall['queries']} held-out queries"
    )
    return out
