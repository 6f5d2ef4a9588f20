"""Metrics against hand computations and numpy's argmax, under both tie rules."""

import numpy as np
import pytest
import torch

from vlm2vec.config import ConfigError
from vlm2vec.encoding.items import DedupedDataset, Item
from vlm2vec.evaluation.metrics import metrics_from_ranks, positive_rank, score_queries, top_candidates

nan = float("nan")


def test_positive_rank_under_each_tie_rule():
    assert positive_rank(np.array([0.9, 0.5, 0.1])) == 1
    assert positive_rank(np.array([0.9, 0.9, 0.1])) == 1  # reference (default): a tie is a hit
    assert positive_rank(np.array([0.9, 0.9, 0.1]), "strict") == 2  # strict: a tie is a miss
    assert positive_rank(np.array([0.5, 0.5, 0.5, 0.6])) == 2
    assert positive_rank(np.array([0.5, 0.5, 0.5, 0.6]), "strict") == 4
    assert positive_rank(np.array([0.7]), "strict") == 1  # a single candidate is always first
    for ties in ("reference", "strict"):  # NaN never helps the positive
        assert positive_rank(np.array([nan, 0.1, 0.2]), ties) == 3
        assert positive_rank(np.array([0.5, nan, 0.1]), ties) == 2
        assert positive_rank(np.array([nan, nan]), ties) == 2
    with pytest.raises(ConfigError, match="eval.ties.*optimistic"):
        positive_rank(np.array([0.1, 0.2]), "optimistic")


def test_reference_rule_equals_numpy_argmax_on_random_integer_scores_with_ties():
    """1,000 draws of small integer scores (many ties): the reference rank is 1 exactly when
    argmax == 0, and hit@k / MRR use the rank of the positive placed first among its ties (strict:
    last), as a stable sort of the scores orders it."""
    rng = np.random.default_rng(0)
    hits, ranks = [], {"reference": [], "strict": []}
    ties_seen = 0
    for _ in range(1000):
        n = int(rng.integers(2, 12))
        scores = rng.integers(0, 4, size=n).astype(np.float64)
        ties_seen += int(np.count_nonzero(scores[1:] == scores[0]) > 0)
        hits.append(bool(np.argmax(scores) == 0))
        ref_order = np.argsort(-scores, kind="stable")  # index order within ties: positive first
        strict_order = np.argsort(-np.roll(scores, -1), kind="stable")  # positive moved last
        expected = {
            "reference": int(np.flatnonzero(ref_order == 0)[0]) + 1,
            "strict": int(np.flatnonzero(strict_order == n - 1)[0]) + 1,
        }
        for ties in ("reference", "strict"):
            rank = positive_rank(scores, ties)
            assert rank == expected[ties], (scores, ties)
            assert top_candidates(scores, n, ties).index(0) + 1 == rank
            ranks[ties].append(rank)
        assert (positive_rank(scores, "reference") == 1) == hits[-1]
    assert ties_seen > 300  # the draws really exercise ties
    ref = metrics_from_ranks(np.array(ranks["reference"]))
    assert ref["precision@1"] == pytest.approx(100 * np.mean(hits))
    strict = metrics_from_ranks(np.array(ranks["strict"]))
    assert strict["precision@1"] < ref["precision@1"] and strict["mrr"] < ref["mrr"]


def _one_dim(values, cands):
    """One-dimensional reps: the query rep is [1], so each candidate's score is its item's value."""
    dd = DedupedDataset(
        [Item("q")],
        [Item(str(v)) for v in values],
        np.zeros(len(cands), dtype=np.int64),
        [np.array(c) for c in cands],
    )
    return torch.ones(1, 1), torch.tensor(values).unsqueeze(1), dd


def test_duplicate_of_the_positive_is_a_hit_under_reference_and_a_miss_under_strict():
    values = [0.9, 0.5, 0.1]
    q, t, dd = _one_dim(values, [[0, 1, 0, 2]])  # candidate 2 is the positive's own item again
    (ref,) = score_queries(q, t, dd, ties="reference")
    (strict,) = score_queries(q, t, dd, ties="strict")
    assert (ref.rank, strict.rank) == (1, 2)
    assert [j for j, _ in ref.top] == [0, 2, 1, 3] and [j for j, _ in strict.top] == [2, 0, 1, 3]
    assert ref.top[0][1] == ref.top[1][1] == ref.positive_score  # a real tie, bitwise


def test_metrics_match_hand_computation_with_ties():
    values = [0.9, 0.5, 0.1, 0.8, 0.2, 0.3, 0.6, 0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75]
    idx = {v: i for i, v in enumerate(values)}
    cands = [
        [idx[0.9], idx[0.5], idx[0.9], idx[0.1]],  # positive tied by the same item repeated
        [idx[0.8], idx[0.2], idx[0.3]],  # clear win -> rank 1
        [idx[0.05]] + [idx[v] for v in (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.45, 0.55, 0.65, 0.75)],  # 11
        [idx[0.5], 1, 1, 1, 1, idx[0.6]],  # 4 ties with the positive's own item + one above
    ]
    q, t, dd = _one_dim(values, cands)
    by_rule = {
        ties: [s.rank for s in score_queries(q, t, dd, top_k=3, ties=ties)]
        for ties in ("reference", "strict")
    }
    assert by_rule == {"reference": [1, 1, 11, 2], "strict": [2, 1, 11, 6]}
    m = metrics_from_ranks(np.array(by_rule["strict"]))
    assert m["precision@1"] == pytest.approx(25.0)
    assert m["hit@5"] == pytest.approx(50.0)
    assert m["hit@10"] == pytest.approx(75.0)
    assert m["mrr"] == pytest.approx(100 * (1 / 2 + 1 + 1 / 11 + 1 / 6) / 4)
    r = metrics_from_ranks(np.array(by_rule["reference"]))
    assert (r["precision@1"], r["hit@5"]) == (pytest.approx(50.0), pytest.approx(75.0))
    assert r["mrr"] == pytest.approx(100 * (1 + 1 + 1 / 11 + 1 / 2) / 4)


def test_top_candidates_order_by_score_then_index_with_the_tie_rule():
    scores = np.array([0.5, 0.7, 0.5, 0.1, 0.5])
    assert top_candidates(scores, 5, "strict") == [1, 2, 4, 0, 3]
    assert top_candidates(scores, 5, "reference") == [1, 0, 2, 4, 3]
    assert top_candidates(np.array([0.2, nan, 0.3]), 3) == [2, 0, 1]  # NaN last


def test_metrics_of_no_queries_raise():
    with pytest.raises(ValueError, match="no queries"):
        metrics_from_ranks(np.array([]))
