"""Benchmark: memory of embed + search against corpus size, queries/s and recall, streamed vs in memory.

Synthetic clustered unit vectors (`--dim`, default 1,536) stand in for an encoder's output, so the
figures measure storage and search alone. For each corpus size two paths run, each in a fresh
subprocess whose peak RSS is read from `getrusage`:

- `memory` (the path before streaming): every vector held until the end of "embedding", the folder
  written from that one tensor, read back whole and searched with one blockwise `topk_exact`;
- `stream` (now): vectors written shard by shard as they are produced (`store.write_shard`, one shard
  in memory), searched by `search_shards` one shard at a time with a merged top-k.

Then a FAISS IVF-Flat and an IVF-PQ index are built over the streamed folder (`build_index`) and their
queries/s and recall@10 against exact search are read from their index.json.

    python scripts/bench_search.py --sizes 50000,100000,200000,400000 --out /tmp/bench_search
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

SHARD_ROWS = 25_000
CLUSTERS = 2_000


def _block(start: int, rows: int, dim: int) -> torch.Tensor:
    """Rows start..start+rows of the synthetic corpus: a cluster centre plus noise, unit length."""
    g = torch.Generator().manual_seed(start)
    centres = torch.randn(CLUSTERS, dim, generator=torch.Generator().manual_seed(-1))
    which = torch.randint(0, CLUSTERS, (rows,), generator=g)
    return torch.nn.functional.normalize(centres[which] + 0.8 * torch.randn(rows, dim, generator=g), dim=1)


def _queries(num: int, dim: int) -> torch.Tensor:
    return _block(10**9, num, dim)


def _write(folder: Path, n: int, dim: int, stream: bool) -> None:
    import pyarrow as pa

    from vlm2vec.corpus.store import shard_name, write_items, write_manifest, write_shard

    starts = list(range(0, n, SHARD_ROWS))
    names = [shard_name(j, len(starts)) for j in range(len(starts))]
    meta = {"dtype": "float32", "model_fingerprint": "synthetic"}
    if stream:  # one shard produced, written, dropped
        for name, s in zip(names, starts):
            rows = torch.arange(s, min(n, s + SHARD_ROWS))
            write_shard(folder / name, _block(s, len(rows), dim), rows, meta)
    else:  # every vector kept until the end, as the encoder returned them before
        vectors = torch.cat([_block(s, min(SHARD_ROWS, n - s), dim) for s in starts])
        for name, s in zip(names, starts):
            write_shard(
                folder / name, vectors[s : s + SHARD_ROWS], torch.arange(s, min(n, s + SHARD_ROWS)), meta
            )
        del vectors
    items = pa.table(
        {"row": range(n), "key": [str(i) for i in range(n)], "text": [""] * n, "image": [""] * n}
    )
    write_items(folder, items)
    write_manifest(folder, n, dim, "float32", names, {"model_fingerprint": "synthetic"})


def _peak_rss_gib() -> float:
    """This process's peak RSS (VmHWM). Not getrusage's ru_maxrss: across fork + exec it keeps the
    parent's peak, so a child started by a big parent would report the parent's memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20  # KiB -> GiB
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(folder: Path, n: int, dim: int, path: str, num_queries: int) -> dict:
    """One path (`memory` or `stream`) of one size: embed (synthetic) + exact search, in this process."""
    from vlm2vec.corpus import ShardFolder, read_store, search_shards, topk_exact

    t0 = time.perf_counter()
    _write(folder, n, dim, stream=path == "stream")
    write_s = time.perf_counter() - t0
    queries = _queries(num_queries, dim)
    t0 = time.perf_counter()
    if path == "stream":
        scores, rows = search_shards(queries, ShardFolder.open(folder), 10)
    else:
        vectors, _, _ = read_store(folder)
        scores, rows = topk_exact(queries, vectors, 10)
    search_s = time.perf_counter() - t0
    torch.save(rows, folder / f"exact-{path}.pt")
    return {
        "peak_rss_gib": round(_peak_rss_gib(), 2),
        "write_s": round(write_s, 1),
        "exact_qps": round(num_queries / search_s, 1),
    }


def _run_child(folder: Path, n: int, dim: int, path: str, num_queries: int) -> dict:
    args = [
        sys.executable,
        __file__,
        "--child",
        path,
        "--folder",
        str(folder),
        "--n",
        str(n),
        "--dim",
        str(dim),
    ]
    out = subprocess.run([*args, "--queries", str(num_queries)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _index(folder: Path, out: Path, kind: str, n: int, dim: int) -> dict:
    from vlm2vec.config import IndexConfig
    from vlm2vec.corpus.index import build_index

    nlist = max(16, int(n**0.5))
    ic = IndexConfig(
        corpus_dir=str(folder), output_dir=str(out), kind=kind, nlist=nlist, nprobe=16, pq_m=dim // 16,
        train_sample=min(n, 39 * nlist), recall_queries=100, recall_k=10,
    )  # fmt: skip
    meta = json.loads((build_index(ic) / "index.json").read_text())
    r = meta["recall"]
    return {
        "build_s": meta["build_seconds"],
        "qps": round(r["queries_per_s"], 1),
        "recall@10": round(r["recall"], 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="50000,100000,200000,400000")
    p.add_argument("--dim", type=int, default=1536)
    p.add_argument("--queries", type=int, default=256)
    p.add_argument("--out", default="/tmp/bench_search")
    p.add_argument("--child", choices=("memory", "stream"))
    p.add_argument("--folder")
    p.add_argument("--n", type=int)
    p.add_argument("--index-sizes", default=None, help="sizes that also build IVF indexes (default: all)")
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(Path(a.folder), a.n, a.dim, a.child, a.queries)))
        return
    root = Path(a.out)
    print(
        f"dim {a.dim}, {a.queries} queries, shards of {SHARD_ROWS} rows, torch threads {torch.get_num_threads()}"
    )
    header = "| items | path | peak RSS (GiB) | write (s) | exact q/s | IVF-Flat q/s, recall@10 | IVF-PQ q/s, recall@10 |"
    print(header + "\n|" + "---|" * 7)
    for n in [int(s) for s in a.sizes.split(",")]:
        for path in ("memory", "stream"):
            folder = root / f"{path}-{n}"
            shutil.rmtree(folder, ignore_errors=True)
            r = _run_child(folder, n, a.dim, path, a.queries)
            same = torch.equal(
                torch.load(folder / f"exact-{path}.pt"), torch.load(root / f"memory-{n}" / "exact-memory.pt")
            )
            ann = ["", ""]
            if path == "stream" and (a.index_sizes is None or str(n) in a.index_sizes.split(",")):
                ivf, pq = (_index(folder, root / f"{k}-{n}", k, n, a.dim) for k in ("ivf_flat", "ivf_pq"))
                ann = [f"{x['qps']}, {x['recall@10']}" for x in (ivf, pq)]
            print(f"| {n:,} | {path}{'' if same else ' (DIFFERS)'} | {r['peak_rss_gib']} | {r['write_s']} | "
                  f"{r['exact_qps']} | {ann[0]} | {ann[1]} |", flush=True)  # fmt: skip
        for name in ("memory", "stream", "ivf_flat", "ivf_pq"):  # keep the disk free for the next size
            shutil.rmtree(root / f"{name}-{n}", ignore_errors=True)


if __name__ == "__main__":
    main()
