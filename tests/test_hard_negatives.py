"""Hardness weighting (LLaVE): alpha * stop_grad(similarity) added to every negative logit."""

import torch
import torch.nn.functional as F

from vlm2vec.losses import ContrastiveLoss


def _reps(rows, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, 6, generator=g), dim=-1).requires_grad_(True)


def test_hardness_weighting_equals_hand_formula_value_and_gradient():
    tau, alpha, k = 0.05, 9.0, 2
    q, t, n = _reps(4, 0), _reps(4, 1), _reps(4 * k, 2)
    loss = ContrastiveLoss(tau, hardness_alpha=alpha)(q, t, n)
    grads = torch.autograd.grad(loss, [q, t, n])

    q2, t2, n2 = (x.detach().clone().requires_grad_(True) for x in (q, t, n))
    sim = q2 @ torch.cat([t2, n2]).T
    rows = []
    for i in range(4):  # loop reference: -log softmax with exp(alpha * s) weights on the negatives
        weights = torch.exp(alpha * sim[i].detach())
        weights[i] = 1.0
        terms = weights * torch.exp(sim[i] / tau)
        rows.append(-torch.log(terms[i] / terms.sum()))
    ref = torch.stack(rows).mean()
    ref_grads = torch.autograd.grad(ref, [q2, t2, n2])
    assert torch.allclose(loss, ref, rtol=1e-5)
    for ours, theirs in zip(grads, ref_grads):
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    plain = ContrastiveLoss(tau)(q, t, n)
    assert loss > plain  # harder negatives weigh more: the loss grows
    assert torch.equal(ContrastiveLoss(tau, hardness_alpha=0.0)(q, t, n), plain)  # 0 = off


def test_hardness_weighting_keeps_masked_candidates_masked():
    q, t = _reps(4, 3), _reps(4, 4)
    keys = torch.tensor([0, 0, 1, 2])
    masked = ContrastiveLoss(0.05, mask_false_negatives=True, hardness_alpha=3.0)(q, t, tgt_keys=keys)
    # drop target 1 for query 0 and target 0 for query 1 by hand: same value
    sim = q @ t.T
    logits = sim / 0.05 + 3.0 * sim.detach() * (1 - torch.eye(4))
    logits[0, 1] = logits[1, 0] = float("-inf")
    assert torch.allclose(masked, F.cross_entropy(logits, torch.arange(4)), rtol=1e-6)
