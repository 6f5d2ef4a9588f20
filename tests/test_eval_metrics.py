"""Metrics against hand computations, ties included (ties count against the positive)."""

import numpy as np
import pytest
import torch

from vlm2vec.evaluation.items import DedupedDataset, Item
from vlm2vec.evaluation.metrics import metrics_from_ranks, positive_rank, score_queries, top_candidates


def test_positive_rank_counts_ties_against_the_positive():
    assert positive_rank(np.array([0.9, 0.5, 0.1])) == 1
    assert positive_rank(np.array([0.9, 0.9, 0.1])) == 2  # a tie is a miss at 1
    assert positive_rank(np.array([0.5, 0.5, 0.5, 0.6])) == 4
    assert positive_rank(np.array([0.7])) == 1  # a single candidate is always first
    nan = float("nan")
    assert positive_rank(np.array([nan, 0.1, 0.2])) == 3  # a NaN positive is never a hit
    assert positive_rank(np.array([0.5, nan, 0.1])) == 2  # a NaN candidate counts against it
    assert positive_rank(np.array([nan, nan])) == 2


def test_metrics_match_hand_computation_with_ties():
    # One-dimensional reps: the query rep is [1], so each candidate's score is its item's value.
    values = [0.9, 0.5, 0.1, 0.8, 0.2, 0.3, 0.6, 0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75]
    tgt_reps = torch.tensor(values).unsqueeze(1)
    idx = {v: i for i, v in enumerate(values)}
    cands = [
        [idx[0.9], idx[0.5], idx[0.9], idx[0.1]],  # positive tied by the same item repeated -> rank 2
        [idx[0.8], idx[0.2], idx[0.3]],  # clear win -> rank 1
        [idx[0.05]] + [idx[v] for v in (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.45, 0.55, 0.65, 0.75)],  # rank 11
        [idx[0.5], 1, 1, 1, 1, idx[0.6]],  # 4 ties with the positive's own item + one above -> rank 6
    ]
    dd = DedupedDataset(
        [Item("q")], [Item(str(v)) for v in values], np.zeros(4, dtype=np.int64), [np.array(c) for c in cands]
    )
    scored = score_queries(torch.ones(1, 1), tgt_reps, dd, top_k=3)
    ranks = [s.rank for s in scored]
    assert ranks == [2, 1, 11, 6]
    m = metrics_from_ranks(np.array(ranks))
    assert m["precision@1"] == pytest.approx(25.0)
    assert m["hit@5"] == pytest.approx(50.0)
    assert m["hit@10"] == pytest.approx(75.0)
    assert m["mrr"] == pytest.approx(100 * (1 / 2 + 1 + 1 / 11 + 1 / 6) / 4)
    # top-k lists the tied other candidate before the positive, as the rank counts it
    assert [j for j, _ in scored[0].top] == [2, 0, 1]
    assert scored[0].top[0][1] == scored[0].top[1][1]


def test_top_candidates_orders_by_score_then_index_with_positive_after_ties():
    scores = np.array([0.5, 0.7, 0.5, 0.1, 0.5])
    assert top_candidates(scores, 5) == [1, 2, 4, 0, 3]


def test_metrics_of_no_queries_raise():
    with pytest.raises(ValueError, match="no queries"):
        metrics_from_ranks(np.array([]))
