"""Corpus embedding and hard-negative mining: `vlm2vec embed` and `vlm2vec mine`.

- `sources`: corpora of distinct items from the training data, a folder of images or a text file;
- `embed`: encode a corpus through the evaluator's sharded, cached, resumable encoder, write
  safetensors shards + an items parquet (`store`);
- `search`: exact blockwise top-k inner products (faiss optional);
- `mine`: top-k per training query, false-negative filters, top / range / sample, MMEB-train output;
- `report`: counts and score histograms (md + PNG).
See docs/hard_negatives.md.
"""

from .embed import embed_corpus, run_embed
from .mine import filter_candidates, pick, run_mine
from .search import topk_exact
from .sources import Corpus, CorpusError
from .store import read_store, write_store

__all__ = [
    "Corpus",
    "CorpusError",
    "embed_corpus",
    "filter_candidates",
    "pick",
    "read_store",
    "run_embed",
    "run_mine",
    "topk_exact",
    "write_store",
]
