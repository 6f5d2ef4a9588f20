"""Per-query ranking of the positive (candidate 0) and the dataset metrics derived from it.

Ties are counted pessimistically: a candidate whose score equals the positive's is ranked ahead of
it. The positive's rank is `1 + #{j >= 1 : score_j >= score_0}`, so Precision@1 counts a query only
when the positive scores strictly above every other candidate. (An `argmax == 0` evaluator counts a
tie as a hit, which lets a collapsed model that scores everything equal reach 100%.) hit@k is
`rank <= k`, MRR the mean of `1 / rank`. All metrics are percentages. NaN scores count against the
positive like ties (a NaN candidate ranks ahead of it, a NaN positive behind every candidate), so a
model emitting NaN embeddings scores 0%, not 100%.

Scores are computed once per distinct candidate item of a query and then spread to its positions, so
repeated candidates get bitwise equal scores and their ties are real ties.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .items import DedupedDataset

METRICS = ("precision@1", "hit@5", "hit@10", "mrr")


def positive_rank(scores: np.ndarray) -> int:
    """1-based rank of candidate 0 with ties (and NaN scores) counted against it."""
    # `not <` rather than `>=`: a NaN positive must not beat every candidate (NaN >= x is False)
    return 1 + int(np.count_nonzero(~(scores[1:] < scores[0])))


def top_candidates(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the k best candidates, ordered as the ranks count them (positive after its ties)."""
    idx = np.arange(len(scores))
    order = np.lexsort((idx, idx == 0, -scores))
    return order[:k].tolist()


def metrics_from_ranks(ranks: np.ndarray) -> dict[str, float]:
    """Precision@1, hit@5, hit@10, MRR (percent) from the positives' ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("no queries to score")
    return {
        "precision@1": float(np.mean(ranks <= 1) * 100.0),
        "hit@5": float(np.mean(ranks <= 5) * 100.0),
        "hit@10": float(np.mean(ranks <= 10) * 100.0),
        "mrr": float(np.mean(1.0 / ranks) * 100.0),
    }


@dataclass
class QueryScores:
    rank: int
    top: list[tuple[int, float]]  # (candidate index, score), best first


def score_queries(
    qry_reps: torch.Tensor, tgt_reps: torch.Tensor, dd: DedupedDataset, top_k: int = 10
) -> list[QueryScores]:
    """Dot-product scores of each query against its own candidates -> positive rank and top-k."""
    out: list[QueryScores] = []
    for q in range(dd.num_queries):
        cand = torch.from_numpy(dd.tgt_index[q])
        uniq, inverse = torch.unique(cand, return_inverse=True)
        uniq_scores = tgt_reps[uniq] @ qry_reps[int(dd.qry_index[q])]
        scores = uniq_scores[inverse].numpy()
        top = top_candidates(scores, top_k)
        out.append(QueryScores(positive_rank(scores), [(j, float(scores[j])) for j in top]))
    return out
