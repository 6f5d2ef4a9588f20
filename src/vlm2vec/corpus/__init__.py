"""Corpus embedding and hard-negative mining: `vlm2vec embed` and `vlm2vec mine`.

- `sources`: corpora of distinct items from the training data, a folder of images or a text file;
- `embed`: encode a corpus through the shared sharded, cached, resumable encoder (`vlm2vec.encoding`),
  write safetensors shards + an items parquet (`store`);
- `shards`: an embed output opened for streaming, checked up front (`ShardFolder`, `read_store`);
- `search`: exact blockwise top-k inner products, streamed over shards with a merged top-k (faiss optional);
- `index`: `vlm2vec index`, FAISS indexes (flat, IVF-Flat, IVF-PQ, HNSW) in parts, with their recall;
- `retrieval`: the one search layer over an index or shard folder, `vlm2vec search`;
- `mine`: top-k per training query, false-negative filters, top / range / sample, MMEB-train output;
- `mine_stats`: what mining did (`MineStats`), counted for `mine.json` and the report;
- `report`: counts and score histograms (md + PNG).
See docs/hard_negatives.md.
"""

from importlib import import_module
from typing import Any

# imported on first use: `import vlm2vec.corpus` alone loads neither torch nor the model code
_EXPORTS = {
    "Corpus": ".sources",
    "IndexFolder": ".index",
    "ShardFolder": ".shards",
    "Target": ".retrieval",
    "build_index": ".index",
    "search_topk": ".retrieval",
    "search_shards": ".search",
    "CorpusError": ".sources",
    "embed_corpus": ".embed",
    "filter_candidates": ".mine",
    "pick": ".mine",
    "read_store": ".shards",
    "run_embed": ".embed",
    "run_mine": ".mine",
    "topk_exact": ".search",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vlm2vec.corpus' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)
