"""Ranking MMEB-V2 tasks over local and global pools, and score dicts under both NDCG rules."""

import numpy as np
import pytest

from vlm2vec.mmeb_v2.ranking import rank_task, score_task
from vlm2vec.mmeb_v2.records import Candidate, Query, TaskData
from vlm2vec.mmeb_v2.tasks import task

CANDS = {n: Candidate(n) for n in ("v0", "v1", "v2")}
CAND_REPS = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])


def _data(name, queries, candidates=CANDS):
    return TaskData(task(name), queries, dict(candidates), "synthetic", "test")


def test_global_pool_ranks_every_candidate_of_the_task():
    data = _data("MSR-VTT", [Query(1, "q", {"v0": 1.0})])
    # scores: v0 0.6, v1 0.8, v2 1.0
    assert rank_task(data, np.array([[0.6, 0.8]]), CAND_REPS) == [["v2", "v1", "v0"]]
    s = score_task(data, np.array([[0.6, 0.8]]), CAND_REPS).scores
    assert s["hit@1"] == 0.0 and s["mrr@5"] == pytest.approx(1 / 3) and s["hit@5"] == 1.0


def test_local_pool_ranks_only_the_query_own_list():
    data = _data("SmthSmthV2", [Query(1, "q", {"v0": 1.0}, candidates=("v0", "v1"))])
    assert rank_task(data, np.array([[0.6, 0.8]]), CAND_REPS) == [["v1", "v0"]]
    s = score_task(data, np.array([[0.6, 0.8]]), CAND_REPS).scores
    assert s["mrr@5"] == pytest.approx(1 / 2) and (s["num_pred"], s["num_data"]) == (1, 1)


def test_global_ranking_in_chunks_equals_one_block():
    rng = np.random.default_rng(0)
    cands = {f"c{i}": Candidate(f"c{i}") for i in range(7)}
    queries = [Query(i + 1, "q", {f"c{i % 7}": 1.0}) for i in range(5)]
    data = _data("MSR-VTT", queries, cands)
    q, c = rng.normal(size=(5, 3)), rng.normal(size=(7, 3))
    assert rank_task(data, q, c, chunk=2) == rank_task(data, q, c, chunk=100)


def test_tie_rule_decides_equal_scores():
    data = _data("MSR-VTT", [Query(1, "q", {"v1": 1.0})])
    zeros_q, zeros_c = np.zeros((1, 2)), np.zeros((3, 2))
    assert score_task(data, zeros_q, zeros_c).scores["hit@1"] == 1.0
    assert score_task(data, zeros_q, zeros_c, ties="strict").scores["hit@1"] == 0.0


def test_other_ndcg_rule_is_scored_only_when_grades_differ():
    pages = {cid: Candidate(cid) for cid in range(1020, 1040)}
    relevant = {cid: (3.0 if cid == 1021 else 2.0) for cid in range(1020, 1040)}
    data = _data("ViDoSeek-doc", [Query(1, "q", relevant)], pages)
    cand = np.zeros((20, 20))
    cand[np.arange(20), np.arange(20)] = 1.0
    query = np.zeros((1, 20))
    query[0, [1, 0, 2, 3, 4]] = [5, 4, 3, 2, 1]  # 1021 first, then 1020, 1022, 1023, 1024
    result = score_task(data, query, cand)
    assert result.scores["ndcg_linear@5"] == pytest.approx(0.855, abs=5e-4)
    assert result.other_rule["ndcg_linear@5"] == pytest.approx(1.0)
    binary = _data("ViDoSeek-page", [Query(1, "q", {1021: 1.0, 1022: 1.0})], pages)
    assert score_task(binary, query, cand).other_rule is None


def test_vector_counts_must_match_the_task():
    data = _data("MSR-VTT", [Query(1, "q", {"v0": 1.0})])
    with pytest.raises(ValueError, match="2 query vectors for 1 queries"):
        rank_task(data, np.zeros((2, 2)), CAND_REPS)
    with pytest.raises(ValueError, match="candidate vectors"):
        rank_task(data, np.zeros((1, 2)), CAND_REPS[:2])
