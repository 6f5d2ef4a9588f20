"""Exact top-k inner-product search: blockwise matmul with a running top-k, on the CPU or a GPU.

Memory is one [query_block, corpus_block] score block plus the running [query_block, k] best, so
millions of corpus rows need no index; faiss (`backend="faiss"`, an optional extra) runs the same exact
search with its own flat index when it is installed.
"""

from __future__ import annotations

import torch

from ..config import ConfigError, MineConfig, choices_of


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"mine.device={name}: no CUDA device here (use cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"mine.device: {name!r} is not a device ({exc})") from None


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
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            "mine.backend=faiss needs the faiss package (pip install faiss-cpu); or use exact"
        ) from None
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
