"""Exact inner-product search, the one scoring path of mining, `vlm2vec search` and whole-corpus ranking.

`topk_exact` is a blockwise matmul with a running top-k on the CPU or a GPU: memory is one
[query_block, corpus_block] score block plus the running [query_block, k] best. `search_shards` streams
an embed output folder shard by shard through it and merges the per-shard top-k (`merge_topk`), so
memory holds one shard whatever the corpus size, and the result equals one search over all vectors.
faiss (`backend="faiss"`, an optional extra) runs the same exact search with its flat index.
`scores.score_blocks` gives full score rows for rankers that need every candidate's score (MMEB-V2's
global pools). `check_same_model` refuses vectors of another model or width than the ones searched.
"""

from __future__ import annotations

import torch

from ..config import ConfigError, MineConfig, choices_of
from ..errors import UserError, import_extra
from .shards import ShardFolder
from .sources import CorpusError


def resolve_device(name: str, key: str = "mine.device") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key}={name}: no CUDA device here (use cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"{key}: {name!r} is not a device ({exc})") from None


def topk_exact(
    queries: torch.Tensor,
    corpus: torch.Tensor,
    k: int,
    *,
    device: torch.device | str = "cpu",
    query_block: int = 4096,
    corpus_block: int = 65536,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, indices), each [Nq, min(k, Nc)], best first: exact `queries @ corpus.T` top-k in fp32."""
    if query_block < 1 or corpus_block < 1:
        raise ConfigError(
            f"mine.query_block / mine.corpus_block must be >= 1, got {query_block}, {corpus_block}"
        )
    device = torch.device(device)
    k = min(k, corpus.shape[0])
    nq = queries.shape[0]
    out_s = torch.empty(nq, k, dtype=torch.float32)
    out_i = torch.empty(nq, k, dtype=torch.int64)
    if k == 0 or nq == 0:
        return out_s, out_i
    blocks = [
        corpus[s : s + corpus_block].to(device, torch.float32)
        for s in range(0, corpus.shape[0], corpus_block)
    ]
    for qs in range(0, nq, query_block):
        q = queries[qs : qs + query_block].to(device, torch.float32)
        best_s = torch.full((q.shape[0], 0), float("-inf"), device=device)
        best_i = torch.empty((q.shape[0], 0), dtype=torch.int64, device=device)
        start = 0
        for block in blocks:
            scores = q @ block.T
            idx = torch.arange(start, start + block.shape[0], device=device).expand(q.shape[0], -1)
            cand_s, cand_i = torch.cat([best_s, scores], 1), torch.cat([best_i, idx], 1)
            best_s, pos = cand_s.topk(min(k, cand_s.shape[1]), dim=1)
            best_i = cand_i.gather(1, pos)
            start += block.shape[0]
        out_s[qs : qs + q.shape[0]] = best_s.cpu()
        out_i[qs : qs + q.shape[0]] = best_i.cpu()
    return out_s, out_i


def topk_faiss(queries: torch.Tensor, corpus: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same search through faiss's exact inner-product index (`pip install faiss-cpu`)."""
    faiss = import_extra("faiss", needed_for="backend=faiss", extra="faiss")
    k = min(k, corpus.shape[0])
    index = faiss.IndexFlatIP(corpus.shape[1])
    index.add(corpus.float().contiguous().numpy())
    scores, idx = index.search(queries.float().contiguous().numpy(), k)
    return torch.from_numpy(scores), torch.from_numpy(idx).long()


def topk(queries: torch.Tensor, corpus: torch.Tensor, k: int, *, backend: str = "exact", **kwargs) -> tuple:
    if backend == "exact":
        return topk_exact(queries, corpus, k, **kwargs)
    if backend == "faiss":
        return topk_faiss(queries, corpus, k)
    raise ConfigError(
        f"mine.backend: {backend!r} is not one of {', '.join(choices_of(MineConfig, 'backend'))}"
    )


def merge_topk(
    best: tuple[torch.Tensor, torch.Tensor], new: tuple[torch.Tensor, torch.Tensor], k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best `k` of two best-first (scores, ids) lists per query, best first."""
    scores, ids = torch.cat([best[0], new[0]], 1), torch.cat([best[1], new[1]], 1)
    top, pos = scores.topk(min(k, scores.shape[1]), dim=1)
    return top, ids.gather(1, pos)


def empty_topk(num_queries: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty(num_queries, 0), torch.empty(num_queries, 0, dtype=torch.int64)


def search_shards(
    queries: torch.Tensor, shards: ShardFolder, k: int, *, backend: str = "exact", **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, item rows), each [Nq, min(k, items)], best first: the exact top-k over every shard of
    an embed output, one shard in memory at a time (`kwargs`: `topk_exact`'s device and blocks)."""
    best = empty_topk(queries.shape[0])
    for rows, vectors in shards.iter_shards():
        scores, idx = topk(queries, vectors.to(torch.float32), k, backend=backend, **kwargs)
        best = merge_topk(best, (scores, rows[idx]), k)
    return best


def check_k(k: int, num_items: int, where: object) -> None:
    """k larger than the corpus is refused (a search would silently return fewer than asked)."""
    if k > num_items:
        raise CorpusError(f"{where}: k={k} but it holds {num_items} items; ask for k <= {num_items}")


def check_same_model(
    query: tuple[str | None, int], target: tuple[str | None, int], where: object, hint: str = ""
) -> None:
    """Refuse, naming both, query vectors of another model (fingerprint) or width than `where`'s; an
    unknown fingerprint (None, vectors from outside) is checked by width only."""
    (q_fp, q_dim), (t_fp, t_dim) = query, target
    if q_dim != t_dim:
        raise UserError(f"{where}: built from {t_dim}-dim vectors, the queries have {q_dim} dims{hint}")
    if q_fp and t_fp and q_fp != t_fp:
        raise UserError(f"{where}: built with model {t_fp}, the queries come from model {q_fp}{hint}")
