"""MMEB-V2 ranking metrics against hand-computed values, both graded-NDCG rules and the tie rules."""

import math

import pytest

from vlm2vec.mmeb_v2.metrics import query_metrics, rank_candidates, reference_score_dict


def test_single_relevant_at_rank_3_gives_hand_values():
    m = query_metrics(["x", "y", "p", "z"], {"p": 1})
    assert (m["hit@1"], m["hit@5"]) == (0.0, 1.0)
    assert m["mrr@5"] == pytest.approx(1 / 3) and m["mrr@1"] == 0.0
    assert m["precision@5"] == pytest.approx(1 / 5) and m["recall@5"] == 1.0
    assert m["map@5"] == pytest.approx(1 / 3)
    assert m["ndcg_linear@5"] == pytest.approx(1 / math.log2(4))  # 0.5
    assert m["f1@5"] == pytest.approx(2 * 0.2 * 1 / 1.2)


def test_multi_positive_hit_at_k_counts_any_relevant_item():
    m = query_metrics(["x", "a", "y", "b"], {"a": 1, "b": 1})
    assert (m["hit@1"], m["hit@5"], m["hit@10"]) == (0.0, 1.0, 1.0)
    assert m["precision@5"] == pytest.approx(2 / 5)
    assert m["recall@1"] == 0.0 and m["recall@5"] == 1.0
    # AP: hits at ranks 2 and 4 -> (1/2 + 2/4) / min(2, 5)
    assert m["map@5"] == pytest.approx(0.5)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    assert m["ndcg_linear@5"] == pytest.approx(dcg / (1 + 1 / math.log2(3)))


def test_map_divides_by_min_of_relevant_count_and_k():
    relevant = {f"r{i}": 1 for i in range(12)}
    m = query_metrics(list(relevant), relevant)
    # 10 hits in the top 10, each with precision 1: 10 / min(12, 10) = 1 (not 10 / 12)
    assert m["map@10"] == 1.0 and m["map@5"] == 1.0
    assert m["recall@10"] == pytest.approx(10 / 12)


def test_graded_ndcg_correct_rule_hand_values():
    ranked, rel = ["q", "p"], {"p": 3, "q": 1}
    m = query_metrics(ranked, rel, ndcg_rule="correct")
    assert m["ndcg_linear@5"] == pytest.approx((1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3)))
    assert m["ndcg_exponential@5"] == pytest.approx((1 + 7 / math.log2(3)) / (7 + 1 / math.log2(3)))
    assert m["ndcg_linear@1"] == pytest.approx(1 / 3)


def test_graded_ndcg_reference_rule_reproduces_the_documented_pairing_defect():
    # MMEB-V2.md §3.2: corpus ids 1020-1039, reference page 1021 graded 3, the rest 2. The reference
    # gives 0.855 when 1021 is ranked first and 1.0 when the wrong page 1025 is.
    rel = {cid: (3 if cid == 1021 else 2) for cid in range(1020, 1040)}
    right = [1021, 1020, 1022, 1023, 1026]
    wrong = [1025, 1020, 1022, 1023, 1026]
    assert query_metrics(right, rel)["ndcg_linear@5"] == pytest.approx(0.855, abs=5e-4)
    assert query_metrics(wrong, rel)["ndcg_linear@5"] == pytest.approx(1.0)
    assert query_metrics(right, rel, ndcg_rule="correct")["ndcg_linear@5"] == pytest.approx(1.0)
    assert query_metrics(wrong, rel, ndcg_rule="correct")["ndcg_linear@5"] == pytest.approx(0.855, abs=5e-4)


def test_rules_agree_when_grades_are_equal_within_the_query():
    rel = {7: 1, 3: 1, 11: 1}
    ranked = [5, 3, 9, 11]
    assert query_metrics(ranked, rel) == query_metrics(ranked, rel, ndcg_rule="correct")


def test_query_without_relevant_items_follows_the_reference_defaults():
    m = query_metrics(["a", "b"], {})
    assert m["recall@5"] == 1.0 and m["hit@5"] == 0.0 and m["map@5"] == 0.0 and m["mrr@5"] == 0.0


def test_ties_put_relevant_first_under_reference_and_last_under_strict():
    names, scores, rel = ["a", "b", "c"], [0.5, 0.5, 0.1], {"b": 1}
    assert rank_candidates(names, scores, rel) == ["b", "a", "c"]
    assert rank_candidates(names, scores, rel, ties="strict") == ["a", "b", "c"]
    assert query_metrics(rank_candidates(names, scores, rel, "strict"), rel)["hit@1"] == 0.0


def test_nan_scores_rank_last_and_duplicates_rank_once():
    names = ["a", "b", "a", "c"]
    scores = [0.2, float("nan"), 0.2, 0.9]
    assert rank_candidates(names, scores, {"b": 1}) == ["c", "a", "b"]
    # a relevant page listed twice is counted once, so MAP stays within 1
    ranked = rank_candidates(["p", "p", "x"], [1.0, 1.0, 0.0], {"p": 1})
    assert ranked == ["p", "x"] and query_metrics(ranked, {"p": 1})["map@5"] == 1.0


def test_unknown_rule_names_the_valid_ones():
    with pytest.raises(ValueError, match="reference, correct"):
        query_metrics(["a"], {"a": 1}, ndcg_rule="fixed")
    with pytest.raises(ValueError, match="reference, strict"):
        rank_candidates(["a"], [1.0], {}, ties="loose")


def test_score_dict_has_reference_key_order_and_averages_queries():
    q1 = query_metrics(["p", "x"], {"p": 1})
    q2 = query_metrics(["x", "p"], {"p": 1})
    d = reference_score_dict([q1, q2], num_data=3)
    keys = list(d)
    assert keys[:3] == ["hit@1", "hit@5", "hit@10"]
    assert keys[3:9] == [f"ndcg_{g}@{k}" for g in ("linear", "exponential") for k in (1, 5, 10)]
    assert keys[-8:] == ["map@1", "map@5", "map@10", "mrr@1", "mrr@5", "mrr@10", "num_pred", "num_data"]
    assert keys[9:18] == [f"{f}@{k}" for f in ("precision", "recall", "f1") for k in (1, 5, 10)]
    assert len(keys) == 8 * 3 + 2
    assert d["hit@1"] == 0.5 and d["mrr@5"] == pytest.approx(0.75)
    assert (d["num_pred"], d["num_data"]) == (2, 3)
