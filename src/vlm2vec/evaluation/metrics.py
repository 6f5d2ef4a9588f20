"""Per-query ranking of the positive (candidate 0) and the dataset metrics derived from it.

Tie rule (`eval.ties`), applied alike to Precision@1, hit@k and MRR:

- ``reference`` (default): the positive wins a tie for its score. This is how the published MMEB
  numbers were computed: VLM2Vec v1 counts a hit when ``numpy.argmax(scores) == 0`` (argmax returns
  the *first* maximum and the positive is candidate 0), and VLM2Vec main compares the top
  candidate's text with the positive's, so an exact duplicate of the positive is a hit as well.
  Rank = ``1 + #{j >= 1 : score_j > score_0}``.
- ``strict``: a tie counts against the positive. Rank = ``1 + #{j >= 1 : score_j >= score_0}``; a
  collapsed model that scores every candidate equally gets 0% instead of 100%.

hit@k is ``rank <= k``, MRR the mean of ``1 / rank``; all metrics are percentages. Under both rules a
NaN score counts against the positive (a NaN candidate ranks ahead of it, a NaN positive behind every
candidate), so a model emitting NaN embeddings scores 0%. (numpy's argmax would return a NaN
positive as the maximum; we do not follow the reference there.)

Scores are computed once per distinct candidate item of a query and then spread to its positions, so
repeated candidates get bitwise equal scores and their ties are real ties.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import ConfigError, EvalConfig, choices_of
from ..encoding.items import DedupedDataset

METRICS = ("precision@1", "hit@5", "hit@10", "mrr")


def check_tie_rule(ties: str) -> str:
    """Return `ties` if it names a rule; otherwise raise naming the key and the valid values."""
    rules = choices_of(EvalConfig, "ties")
    if ties not in rules:
        raise ConfigError(f"eval.ties: unknown tie rule {ties!r}; valid: {', '.join(rules)}")
    return ties


def positive_rank(scores: np.ndarray, ties: str = "reference") -> int:
    """1-based rank of candidate 0 under the tie rule; NaN scores always count against it."""
    check_tie_rule(ties)
    others, pos = scores[1:], scores[0]
    # `not <` / `not <=` rather than `>=` / `>`: comparisons with NaN are False, so a NaN on either
    # side counts the candidate as ahead of the positive
    ahead = ~(others <= pos) if ties == "reference" else ~(others < pos)
    return 1 + int(np.count_nonzero(ahead))


def top_candidates(scores: np.ndarray, k: int, ties: str = "reference") -> list[int]:
    """Indices of the k best candidates, ordered as the ranks count them: by score, then index, with
    the positive first among its ties (reference) or last (strict); NaN scores go last."""
    check_tie_rule(ties)
    idx = np.arange(len(scores))
    positive_key = idx != 0 if ties == "reference" else idx == 0
    nan_last = np.where(np.isnan(scores), np.inf, -scores)
    order = np.lexsort((idx, positive_key, nan_last))
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
    positive_score: float
    top: list[tuple[int, float]]  # (candidate index, score), best first


def score_queries(
    qry_reps: torch.Tensor,
    tgt_reps: torch.Tensor,
    dd: DedupedDataset,
    top_k: int = 10,
    ties: str = "reference",
) -> list[QueryScores]:
    """Dot-product scores of each query against its own candidates -> positive rank and top-k."""
    check_tie_rule(ties)
    out: list[QueryScores] = []
    for q in range(dd.num_queries):
        cand = torch.from_numpy(dd.tgt_index[q])
        uniq, inverse = torch.unique(cand, return_inverse=True)
        uniq_scores = tgt_reps[uniq] @ qry_reps[int(dd.qry_index[q])]
        scores = uniq_scores[inverse].numpy()
        top = top_candidates(scores, top_k, ties)
        out.append(
            QueryScores(positive_rank(scores, ties), float(scores[0]), [(j, float(scores[j])) for j in top])
        )
    return out
