"""Ranking metrics of MMEB-V2 per query, and the per-dataset score dict in the reference's key names.

A query is scored from its ranked candidate names and a relevance dict (relevant name -> grade, in
qrels file order; binary tasks use grade 1). For k in 1, 5, 10: hit, precision, recall, f1, MAP
(divided by min(#relevant, k)), MRR and NDCG with linear (gain = grade) and exponential
(gain = 2^grade - 1) gains; the ideal DCG uses the grades sorted descending, truncated to k. The
reference's definitions are followed, including recall = 1 and hit = MAP = MRR = 0 for a query with
no relevant item (NDCG is 0 there: the reference leaves it undefined).

Graded NDCG has two rules (`NDCG_RULES`). ``reference`` (default, so numbers compare with the
leaderboard) reproduces the reference's pairing defect: it de-duplicates the relevant names through
a Python set *before* zipping them with the grades in file order, so a grade can land on another page.
The set order of integer ids is deterministic; for string ids it follows PYTHONHASHSEED, as in the
reference. ``correct`` gives each page its own grade. The rules differ only when grades differ within a
query (ViDoSeek-doc, MMLongBench-doc, ViDoRe_esg_reports_human_labeled_v2).

Ranking follows the V1 evaluator's tie rules (`TIE_RULES`): ``reference`` (default) puts relevant
candidates first among equal scores, ``strict`` last; then candidate order. NaN scores rank last.
A name listed twice is ranked once (its copies share one embedding); the reference would count it
twice and can exceed 1 on NDCG and MAP.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from ..config import EvalConfig, choices_of

KS = (1, 5, 10)
#: graded-NDCG pairing rules; the first is the default
NDCG_RULES = choices_of(EvalConfig, "ndcg_rule")
#: tie rules as in the V1 evaluator (`eval.ties`); the first is the default
TIE_RULES = choices_of(EvalConfig, "ties")
#: metric families in the order of the reference's score files
SCORE_FAMILIES = (
    "hit",
    "ndcg_linear",
    "ndcg_exponential",
    "precision",
    "recall",
    "f1",
    "map",
    "mrr",
)


def _check(value: str, valid: tuple[str, ...], what: str) -> None:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")


def rank_candidates(
    names: Sequence[Hashable],
    scores: Sequence[float] | np.ndarray,
    relevant: Mapping[Hashable, float],
    ties: str = "reference",
) -> list[Hashable]:
    """Candidate names best first: by score, relevant first (``reference``) or last (``strict``)
    among ties, then by position; NaN last; each distinct name once (at its first position)."""
    _check(ties, TIE_RULES, "tie rule")
    scores = np.asarray(scores, dtype=np.float64)
    if len(names) != len(scores):
        raise ValueError(f"{len(names)} candidate names but {len(scores)} scores")
    first: dict[Hashable, int] = {}
    for i, name in enumerate(names):
        first.setdefault(name, i)
    idx = np.fromiter(first.values(), dtype=np.int64, count=len(first))
    is_rel = np.array([names[i] in relevant for i in idx], dtype=bool)
    tie_key = ~is_rel if ties == "reference" else is_rel
    score_key = np.where(np.isnan(scores[idx]), np.inf, -scores[idx])
    order = np.lexsort((idx, tie_key, score_key))
    return [names[int(idx[j])] for j in order]


def _gains(relevant: Mapping[Hashable, float], rule: str) -> dict[Hashable, float]:
    """Grade of each relevant name under the pairing `rule`."""
    if rule == "correct":
        return dict(relevant)
    return dict(zip(set(relevant), relevant.values()))


def _ndcg(top: Sequence[Hashable], gains: Mapping[Hashable, float], k: int, exponential: bool) -> float:
    def gain(g: float) -> float:
        return 2.0**g - 1.0 if exponential else float(g)

    dcg = sum(gain(gains[n]) / math.log2(i + 2) for i, n in enumerate(top[:k]) if n in gains)
    ideal = sorted(gains.values(), reverse=True)[:k]
    idcg = sum(gain(g) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def _at_k(ranked: Sequence[Hashable], relevant: Mapping[Hashable, float], k: int) -> dict[str, float]:
    """hit, precision, recall, f1, MAP and MRR at k."""
    top = ranked[:k]
    flags = [n in relevant for n in top]
    hits = sum(flags)
    n_rel = len(relevant)
    precision = hits / k
    recall = hits / n_rel if n_rel else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    ap, seen = 0.0, 0
    for i, flag in enumerate(flags):
        if flag:
            seen += 1
            ap += seen / (i + 1)
    first = next((i for i, flag in enumerate(flags) if flag), None)
    return {
        "hit": 1.0 if hits else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "map": ap / min(n_rel, k) if n_rel else 0.0,
        "mrr": 1.0 / (first + 1) if first is not None else 0.0,
    }


def query_metrics(
    ranked: Sequence[Hashable],
    relevant: Mapping[Hashable, float],
    ndcg_rule: str = "reference",
    ks: Sequence[int] = KS,
) -> dict[str, float]:
    """Every metric of one query as ``family@k`` -> value in [0, 1]."""
    _check(ndcg_rule, NDCG_RULES, "NDCG rule")
    gains = _gains(relevant, ndcg_rule)
    out: dict[str, float] = {}
    for k in ks:
        for family, value in _at_k(ranked, relevant, k).items():
            out[f"{family}@{k}"] = value
        out[f"ndcg_linear@{k}"] = _ndcg(ranked, gains, k, exponential=False)
        out[f"ndcg_exponential@{k}"] = _ndcg(ranked, gains, k, exponential=True)
    return out


def reference_score_dict(
    per_query: Sequence[Mapping[str, float]], num_data: int, ks: Sequence[int] = KS
) -> dict[str, float | int]:
    """The per-dataset score file as the reference writes it: each ``family@k`` averaged over queries,
    in the reference's key order, then ``num_pred`` (queries scored) and ``num_data`` (rows read)."""
    if not per_query:
        raise ValueError("no queries to score")
    out: dict[str, float | int] = {}
    for family in SCORE_FAMILIES:
        for k in ks:
            key = f"{family}@{k}"
            out[key] = float(np.mean([q[key] for q in per_query]))
    out["num_pred"] = len(per_query)
    out["num_data"] = int(num_data)
    return out
