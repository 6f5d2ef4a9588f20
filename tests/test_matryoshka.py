"""Matryoshka: truncated + re-normalised reps in encode, the summed loss, and the evaluator's `eval.dim`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from eval_fakes import FakeEncoder
from vlm2vec import EmbeddingModel
from vlm2vec.config import ConfigError, EvalConfig, load_config
from vlm2vec.evaluation import evaluate_model
from vlm2vec.losses import ContrastiveLoss, MatryoshkaLoss
from vlm2vec.matryoshka import truncate_reps
from vlm2vec.testing import tiny_model_config
from vlm2vec.testing.synthetic import write_synthetic_mmeb_eval


def test_truncate_keeps_the_prefix_and_renormalises():
    reps = F.normalize(torch.randn(3, 8), dim=-1)
    cut = truncate_reps(reps, 3)
    assert cut.shape == (3, 3)
    assert torch.allclose(cut * reps[:, :3].norm(dim=-1, keepdim=True), reps[:, :3], atol=1e-6)
    assert torch.allclose(cut.norm(dim=-1), torch.ones(3))
    assert truncate_reps(reps, None) is reps
    for bad in (0, 9, 2.5, True):
        with pytest.raises(ValueError, match="Matryoshka dim must be an int in 1..8"):
            truncate_reps(reps, bad)


def test_encode_and_embed_at_a_dim_are_the_truncated_full_reps(tiny_qwen_dir, tiny_images):
    model = EmbeddingModel.from_config(tiny_model_config("qwen2_vl", tiny_qwen_dir)).eval()
    inputs = model.processor(["<|image_1|> a red circle", "blue"], [[tiny_images[0]], []])
    with torch.no_grad():
        full = model.encode(inputs)
        small = model.encode(inputs, dim=16)
    assert small.shape == (2, 16)
    assert torch.allclose(small, F.normalize(full[:, :16], dim=-1), atol=1e-6)
    assert torch.allclose(model.embed(["blue"], dim=16), small[1:], atol=1e-5)


def test_matryoshka_loss_is_the_infonce_summed_over_the_truncated_reps():
    torch.manual_seed(0)
    q = F.normalize(torch.randn(6, 32), dim=-1).requires_grad_()
    t = F.normalize(torch.randn(6, 32), dim=-1).requires_grad_()
    base = ContrastiveLoss(temperature=0.05)
    loss = MatryoshkaLoss(base, [4, 16, 32])(q, t)
    (grad_q,) = torch.autograd.grad(loss, q, retain_graph=True)
    by_hand = sum(base(F.normalize(q[:, :d], dim=-1), F.normalize(t[:, :d], dim=-1)) for d in (4, 16, 32))
    (hand_q,) = torch.autograd.grad(by_hand, q)
    assert torch.allclose(loss, by_hand) and torch.allclose(grad_q, hand_q)
    assert not torch.allclose(loss, base(q, t))
    with pytest.raises(ValueError, match="dims repeat"):
        MatryoshkaLoss(base, [4, 4])
    with pytest.raises(ConfigError, match=r"train.matryoshka_dims: Matryoshka dim must be an int in 1..32"):
        MatryoshkaLoss(base, [64], key="train.matryoshka_dims")(q, t)


def test_config_keys_for_training_and_evaluation_dims():
    cfg = load_config(None, ["--train.matryoshka_dims=[64, 256]", "--eval.dim=64"])
    assert cfg.train.matryoshka_dims == [64, 256] and cfg.eval.dim == 64


class _Truncating(FakeEncoder):
    def encode(self, inputs):
        return truncate_reps(super().encode(inputs), 4)


def test_evaluator_scores_at_a_dim_from_the_full_size_cache(tmp_path):
    data = write_synthetic_mmeb_eval(
        tmp_path / "data", datasets={"ImageNet-1K": "classification", "MSCOCO_t2i": "retrieval_t2i"},
        num_queries=12, num_candidates=6, seed=4,
    )  # fmt: skip

    def run(model, out, **kw):
        cfg = EvalConfig(data_dir=str(data), output_dir=str(out), batch_size=4, skip_missing=True, **kw)
        summary = evaluate_model(model, cfg)
        return {name: r["precision@1"] for name, r in summary["datasets"].items()}

    full = run(FakeEncoder(dim=16), tmp_path / "a")
    expected = run(_Truncating(dim=16), tmp_path / "b")
    again = FakeEncoder(dim=16)
    at_4 = run(again, tmp_path / "a", dim=4)
    assert at_4 == expected and at_4 != full
    assert again.calls == 0  # scored from the cached full-size reps
