"""Ranking a task's queries over their candidate pools, and the task's score dicts under both NDCG rules.

A query of a local task ranks its own candidate list; a global or corpus task ranks every distinct
candidate of the task (each encoded once). Scores are dot products of the embeddings (cosine for
normalised ones), computed in query chunks by the search layer (`corpus.scores.score_blocks`); ties
and NaN follow `metrics.TIE_RULES`.
When grades differ within some query, the scores under the other graded-NDCG rule are computed as
well, so a report can show both wherever they differ.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from ..corpus.scores import score_blocks
from .metrics import NDCG_RULES, query_metrics, rank_candidates, reference_score_dict
from .records import TaskData
from .tasks import LOCAL


@dataclass
class TaskScores:
    """Per-dataset scores in the reference's key names; `other_rule` is None when the NDCG rules agree."""

    ndcg_rule: str
    scores: dict[str, float | int]
    other_rule: dict[str, float | int] | None
    rankings: list[list[Hashable]]


def _check_shapes(data: TaskData, query_reps: np.ndarray, cand_reps: np.ndarray) -> None:
    if query_reps.shape[0] != len(data.queries):
        raise ValueError(f"{query_reps.shape[0]} query vectors for {len(data.queries)} queries")
    if cand_reps.shape[0] != len(data.candidates):
        raise ValueError(f"{cand_reps.shape[0]} candidate vectors for {len(data.candidates)} candidates")


def rank_task(
    data: TaskData, query_reps: np.ndarray, cand_reps: np.ndarray, ties: str = "reference", chunk: int = 256
) -> list[list[Hashable]]:
    """Ranked candidate names per query; `cand_reps` rows follow `data.candidates` order."""
    _check_shapes(data, query_reps, cand_reps)
    names = list(data.candidates)
    if data.task.pool != LOCAL:
        out: list[list[Hashable]] = []
        for start, block in score_blocks(query_reps, cand_reps, chunk):
            for q, scores in zip(data.queries[start : start + chunk], block):
                out.append(rank_candidates(names, scores, q.relevant, ties))
        return out
    index = {name: i for i, name in enumerate(names)}
    out = []
    for q, rep in zip(data.queries, query_reps):
        rows = [index[n] for n in q.candidates]
        out.append(rank_candidates(list(q.candidates), cand_reps[rows] @ rep, q.relevant, ties))
    return out


def _graded(data: TaskData) -> bool:
    return any(len(set(q.relevant.values())) > 1 for q in data.queries)


def score_task(
    data: TaskData,
    query_reps: np.ndarray,
    cand_reps: np.ndarray,
    *,
    ties: str = "reference",
    ndcg_rule: str = "reference",
    num_data: int | None = None,
) -> TaskScores:
    """Rank and score one task; `num_data` (rows read) defaults to the number of queries."""
    rankings = rank_task(data, query_reps, cand_reps, ties)

    def scores(rule: str) -> dict[str, float | int]:
        per_query = [query_metrics(r, q.relevant, rule) for r, q in zip(rankings, data.queries)]
        return reference_score_dict(per_query, num_data if num_data is not None else len(data.queries))

    other = next(r for r in NDCG_RULES if r != ndcg_rule)
    return TaskScores(ndcg_rule, scores(ndcg_rule), scores(other) if _graded(data) else None, rankings)
