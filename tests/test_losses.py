"""ContrastiveLoss against a loop-by-loop reference written from the definition."""

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from vlm2vec.config import Config, ModelConfig, TrainConfig
from vlm2vec.distributed import scale_grad
from vlm2vec.losses import ContrastiveLoss, MatryoshkaLoss, as_keys, build_loss, content_key, content_keys

TEMP = 0.05


def reference_loss(q, t, negs=None, temp=TEMP, tgt_keys=None, neg_keys=None, qry_keys=None, symmetric=False):
    """InfoNCE with explicit loops: for every query, a softmax over the allowed candidates."""
    negs = [] if negs is None else list(negs)
    n = len(q)

    def dot(a, b):
        return sum(a[h] * b[h] for h in range(len(a)))

    def nll(anchor_i, anchors, cands, cand_keys_of_positive, cand_keys, extra=lambda j: False):
        terms = []
        for j, cand in enumerate(cands):
            if j != anchor_i and cand_keys is not None and cand_keys[j] == cand_keys_of_positive:
                continue  # a false negative: same content as the positive
            if j != anchor_i and extra(j):
                continue
            terms.append(dot(anchors[anchor_i], cand) / temp)
        pos = dot(anchors[anchor_i], cands[anchor_i]) / temp
        top = max(terms)
        return top + torch.log(sum(torch.exp(x - top) for x in terms)) - pos

    forward_total = 0.0
    cand_keys = None
    if tgt_keys is not None:
        cand_keys = list(tgt_keys) + (list(neg_keys) if neg_keys is not None else [object()] * len(negs))
    for i in range(n):
        forward_total = forward_total + nll(
            i, q, list(t) + negs, tgt_keys[i] if tgt_keys else None, cand_keys
        )
    loss = forward_total / n
    if symmetric:
        backward_total = 0.0
        for j in range(n):
            # target j: skip query i whose own target has j's content, or that duplicates query j
            same_target = (lambda i, j=j: tgt_keys[i] == tgt_keys[j]) if tgt_keys else (lambda i: False)
            backward_total = backward_total + nll(
                j, t, list(q), qry_keys[j] if qry_keys else None, qry_keys, extra=same_target
            )
        loss = (loss + backward_total / n) / 2
    return loss


def reps(rows, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, dim, generator=g), dim=-1).requires_grad_(True)


def check_value_and_grads(ours, ref, leaves):
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-6), (ours.item(), ref.item())
    g_ours = torch.autograd.grad(ours, leaves, retain_graph=True)
    g_ref = torch.autograd.grad(ref, leaves)
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_in_batch_loss_equals_loop_reference_value_and_gradient():
    q, t = reps(5, seed=1), reps(5, seed=2)
    check_value_and_grads(ContrastiveLoss(TEMP)(q, t), reference_loss(q, t), [q, t])


def test_default_temperature_is_vlm2vec_002_and_matches_cross_entropy():
    q, t = reps(4, seed=3), reps(4, seed=4)
    expected = F.cross_entropy(q @ t.T / 0.02, torch.arange(4))
    assert ContrastiveLoss().temperature == 0.02
    assert torch.allclose(ContrastiveLoss()(q, t), expected)


@pytest.mark.parametrize("shape", ["grouped", "flat"])
def test_hard_negative_loss_equals_loop_reference(shape):
    q, t, n = reps(4, seed=5), reps(4, seed=6), reps(8, seed=7)  # k = 2 per query
    neg = n.view(4, 2, -1) if shape == "grouped" else n
    check_value_and_grads(ContrastiveLoss(TEMP)(q, t, neg), reference_loss(q, t, negs=n), [q, t, n])


def test_false_negative_masking_equals_loop_reference():
    q, t = reps(6, seed=8), reps(6, seed=9)
    keys = [10, 11, 10, 12, 11, 10]  # rows 0, 2, 5 share a positive, as do rows 1, 4
    ours = ContrastiveLoss(TEMP, mask_false_negatives=True)(q, t, tgt_keys=keys)
    check_value_and_grads(ours, reference_loss(q, t, tgt_keys=keys), [q, t])
    assert not torch.allclose(ours, ContrastiveLoss(TEMP)(q, t))  # the mask changes the loss


def test_masking_with_hard_negative_keys_equals_loop_reference():
    q, t, n = reps(4, seed=10), reps(4, seed=11), reps(4, seed=12)  # k = 1
    tk, nk = [1, 2, 3, 1], [2, 9, 9, 1]  # neg 0 equals positive of query 1, neg 3 of queries 0 and 3
    ours = ContrastiveLoss(TEMP, mask_false_negatives=True)(q, t, n, tgt_keys=tk, neg_keys=nk)
    check_value_and_grads(ours, reference_loss(q, t, negs=n, tgt_keys=tk, neg_keys=nk), [q, t, n])


def test_symmetric_loss_equals_loop_reference():
    q, t = reps(5, seed=13), reps(5, seed=14)
    ours = ContrastiveLoss(TEMP, symmetric=True)(q, t)
    check_value_and_grads(ours, reference_loss(q, t, symmetric=True), [q, t])


def test_symmetric_masked_with_hard_negatives_equals_loop_reference():
    q, t, n = reps(5, seed=15), reps(5, seed=16), reps(10, seed=17)
    tk, qk = ["a", "b", "a", "c", "b"], ["x", "x", "y", "z", "y"]
    loss = ContrastiveLoss(TEMP, mask_false_negatives=True, symmetric=True)
    ours = loss(q, t, n, qry_keys=qk, tgt_keys=tk)
    check_value_and_grads(
        ours, reference_loss(q, t, negs=n, tgt_keys=tk, qry_keys=qk, symmetric=True), [q, t, n]
    )


def test_masking_without_keys_raises_value_error():
    q, t = reps(3), reps(3, seed=1)
    with pytest.raises(ValueError, match="tgt_keys"):
        ContrastiveLoss(mask_false_negatives=True)(q, t)


def test_symmetric_term_masks_queries_whose_target_duplicates_the_anchor_target():
    """Classification: targets "cat" (rows 0, 2) must not be asked to prefer their own query over the
    other "cat" query; distinct queries (no qry_keys) still leave that mask in place."""
    q, t = reps(4, seed=20), reps(4, seed=21)
    tk = ["cat", "dog", "cat", "fox"]
    ours = ContrastiveLoss(TEMP, mask_false_negatives=True, symmetric=True)(q, t, tgt_keys=tk)
    check_value_and_grads(ours, reference_loss(q, t, tgt_keys=tk, symmetric=True), [q, t])
    qk = ["a", "b", "c", "d"]  # distinct queries add no mask: the target keys alone decide
    with_qk = ContrastiveLoss(TEMP, mask_false_negatives=True, symmetric=True)(q, t, qry_keys=qk, tgt_keys=tk)
    assert with_qk.item() == pytest.approx(ours.item(), rel=1e-6)


def test_loss_under_bf16_autocast_is_computed_in_fp32():
    q, t = reps(4, seed=18), reps(4, seed=19)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = ContrastiveLoss()(q, t)
    assert ours.dtype == torch.float32
    assert torch.allclose(ours, ContrastiveLoss()(q, t), rtol=1e-6)


def test_content_keys_equal_for_same_item_and_differ_otherwise():
    keys = content_keys([("cat", "img/1.jpg"), ("cat", "img/1.jpg"), ("cat", "img/2.jpg"), ("cat", None)])
    assert keys.dtype == torch.long
    assert keys[0] == keys[1] and len(set(keys.tolist())) == 3
    assert content_key("cat", None) == content_key("cat", "") == content_key("cat", [])
    assert as_keys(["cat", "cat", "dog"], torch.device("cpu")).unique().numel() == 2


def test_content_key_is_stable_across_processes():
    code = "from vlm2vec.losses import content_key; print(content_key('a dog', ['x.jpg']))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout.strip()) == content_key("a dog", ["x.jpg"])


def test_scale_grad_keeps_value_and_scales_gradient():
    x = torch.tensor(1.5, requires_grad=True)
    y = scale_grad(x * 2, 4)
    y.backward()
    assert y.item() == 3.0 and x.grad.item() == 8.0
    assert math.isclose(scale_grad(x, 1).item(), 1.5)


def test_build_loss_follows_the_config():
    cfg = Config(
        model=ModelConfig(temperature=0.05),
        train=TrainConfig(mask_false_negatives=True, symmetric_loss=True, hardness_alpha=2.0),
    )
    loss = build_loss(cfg)
    assert isinstance(loss, ContrastiveLoss)
    assert (loss.temperature, loss.mask_false_negatives, loss.symmetric, loss.hardness_alpha) == (
        0.05,
        True,
        True,
        2.0,
    )
    cfg.train.matryoshka_dims = [8, 4]
    wrapped = build_loss(cfg)
    assert (
        isinstance(wrapped, MatryoshkaLoss)
        and wrapped.dims == [8, 4]
        and wrapped.key == "train.matryoshka_dims"
    )


def reference_multi(
    q, t, owner, negs=(), temp=TEMP, tgt_keys=None, neg_keys=None, alpha=0.0, symmetric=False
):
    """Multi-positive InfoNCE by hand: for query i and each of its positives p, -log of p's exp-term
    over p's and the negatives' exp-terms (i's other positives and same-content candidates left out,
    each negative's logit raised by alpha * similarity); averaged per query, then over queries."""
    cands = list(t) + list(negs)
    keys = None if tgt_keys is None else list(tgt_keys) + list(neg_keys or [None] * len(negs))

    def sim(a, b):
        return (a * b).sum()

    total = 0.0
    queries = sorted(set(owner))
    for i in queries:
        mine = [j for j, o in enumerate(owner) if o == i]
        my_keys = {tgt_keys[j] for j in mine} if tgt_keys is not None else set()
        per_positive = []
        for p in mine:
            terms = [sim(q[i], cands[p]) / temp]
            for j, cand in enumerate(cands):
                if j in mine or (keys is not None and keys[j] in my_keys):
                    continue
                s = sim(q[i], cand)
                terms.append(s / temp + alpha * s.detach())
            per_positive.append(torch.logsumexp(torch.stack(terms), 0) - terms[0])
        total = total + sum(per_positive) / len(per_positive)
    loss = total / len(queries)
    if symmetric:
        back = 0.0
        for i in queries:
            mine = [j for j, o in enumerate(owner) if o == i]
            for p in mine:
                terms = [sim(t[p], q[i]) / temp]
                for k in queries:
                    if k == i:
                        continue
                    theirs = {tgt_keys[j] for j, o in enumerate(owner) if o == k} if tgt_keys else set()
                    if tgt_keys is not None and tgt_keys[p] in theirs:
                        continue
                    terms.append(sim(t[p], q[k]) / temp)
                back = back + (torch.logsumexp(torch.stack(terms), 0) - terms[0]) / len(mine)
        loss = (loss + back / len(queries)) / 2
    return loss


OWNER = [0, 1, 1, 1, 2, 3, 3]  # query 1 has three positives, query 3 two


def test_multi_positive_loss_equals_hand_computation():
    q, t = reps(4, seed=30), reps(7, seed=31)
    ours = ContrastiveLoss(TEMP)(q, t, tgt_owner=OWNER)
    check_value_and_grads(ours, reference_multi(q, t, OWNER), [q, t])
    # the other positives are not negatives: counting them as negatives would give another value
    first_only = ContrastiveLoss(TEMP)(q, t[[0, 1, 4, 5]])
    assert not torch.allclose(ours, first_only)


def test_multi_positive_with_hard_negatives_masking_hardness_and_symmetric_term_equals_hand_computation():
    q, t, n = reps(4, seed=32), reps(7, seed=33), reps(4, seed=34)
    tk = ["a", "b", "c", "a", "d", "e", "b"]  # query 1's third positive repeats query 0's; 3's second, 1's
    nk = ["x", "c", "y", "d"]  # negative 1 has query 1's content, negative 3 query 2's
    loss = ContrastiveLoss(TEMP, mask_false_negatives=True, hardness_alpha=3.0, symmetric=True)
    ours = loss(q, t, n, tgt_keys=tk, neg_keys=nk, tgt_owner=OWNER)
    ref = reference_multi(q, t, OWNER, negs=n, tgt_keys=tk, neg_keys=nk, alpha=3.0, symmetric=True)
    check_value_and_grads(ours, ref, [q, t, n])


def test_masked_counts_the_false_negatives_of_identical_class_targets():
    """Classification rows: every "Yes" target is a false negative for the other "Yes" queries."""
    q, t = reps(6, seed=35), reps(6, seed=36)
    labels = ["Yes", "No", "Yes", "Yes", "No", "Maybe"]
    loss = ContrastiveLoss(TEMP, mask_false_negatives=True)
    keys = content_keys((label, None) for label in labels)
    value = loss(q, t, tgt_keys=keys)
    assert loss.masked == 3 * 2 + 2 * 1  # each of 3 "Yes" queries drops 2 others, each "No" drops 1
    check_value_and_grads(value, reference_loss(q, t, tgt_keys=list(keys.tolist())), [q, t])
    assert MatryoshkaLoss(loss, [6, 3]).masked == loss.masked
