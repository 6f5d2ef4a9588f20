"""GradCache with video rows on a tiny Qwen2-VL: chunks are sized by the tokens videos really take,
and the cached two-pass step equals full-batch autograd through the same chunks, also with several
positives per query (`tgt_owner`), hard negatives, masking and the symmetric term."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from PIL import Image

from gradcache_reference import reps_in_row_order
from vlm2vec import EmbeddingModel
from vlm2vec.chunking import plan_chunks, row_lengths
from vlm2vec.gradcache import GradCache
from vlm2vec.losses import ContrastiveLoss
from vlm2vec.testing import tiny_model_config

QRY = ["<|video_1|> what happens here", "find the clip of a dog", "<|image_1|> a still"]
# targets: query 0 has two positives (a video and a text), query 2 two (an image and a video)
TGT = ["<|video_1|> a dog runs", "a cat jumps", "<|image_1|> the same still", "<|video_1|> clip one", "a dog"]
OWNER = [0, 1, 2, 2, 0]


def _frames(n: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def video_batches(tiny_qwen_dir):
    torch.manual_seed(0)
    model = EmbeddingModel.from_config(tiny_model_config("qwen2_vl", tiny_qwen_dir)).train()
    for module in model.modules():  # tiny checkpoints have dropout 0: exercise the RNG replay
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.1
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.1
    proc = model.processor
    still = _frames(1, 9)[0]
    qry = proc(QRY, [[], [], [still]], videos=[[_frames(4, 1)], [], []])
    tgt = proc(TGT, [[], [], [still], [], []], videos=[[_frames(2, 3)], [], [], [_frames(2, 4)], []])
    neg = proc(["a bird", "<|video_1|> a car"], None, videos=[[], [_frames(2, 6)]])
    return model, qry, tgt, neg


def test_video_rows_count_their_video_tokens_in_chunk_budgets(video_batches):
    model, qry, _, _ = video_batches
    lengths = row_lengths(qry)
    video_tokens = int((qry["input_ids"][0] == model.processor.video_token_id).sum())
    assert video_tokens > 0 and lengths[0] >= video_tokens + 3  # the row's text and its video tokens
    budget = 2 * max(lengths[1:])  # the text and image rows fit together; with its video, row 0 does not
    assert plan_chunks(lengths, max_tokens=budget) == [[0], [1, 2]]


def test_gradcache_with_video_rows_and_several_positives_equals_full_batch(video_batches):
    model, qry, tgt, neg = video_batches
    keys = dict(tgt_keys=torch.tensor([0, 1, 2, 3, 1]), neg_keys=torch.tensor([7, 3]), tgt_owner=OWNER)
    loss_fn = functools.partial(
        ContrastiveLoss(0.05, mask_false_negatives=True, symmetric=True, hardness_alpha=2.0), **keys
    )
    rows = {"qry": 2, "tgt": 3}

    def plan(side, inputs):
        chunks = plan_chunks(row_lengths(inputs), rows["qry" if side == "qry" else "tgt"])
        return chunks if len(chunks) > 1 else [list(range(len(row_lengths(inputs))))]

    model.zero_grad()
    torch.manual_seed(5)
    q = reps_in_row_order(model, qry, plan("qry", qry), "qry")
    t = reps_in_row_order(model, tgt, plan("tgt", tgt), "tgt")
    n = reps_in_row_order(model, neg, plan("neg", neg), "tgt")
    ref_loss = loss_fn(q, t, n)
    ref_loss.backward()
    ref = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    assert len(plan("qry", qry)) > 1 and len(plan("tgt", tgt)) > 1  # really chunked

    model.zero_grad()
    torch.manual_seed(5)
    step = GradCache(loss_fn, rows["qry"], rows["tgt"], split_fn=model.split_batch)
    loss = step.step(model, qry, tgt, neg)
    assert torch.allclose(loss, ref_loss.detach(), rtol=1e-5)
    floor = 1e-3 * max(g.norm() for g in ref.values())
    for name, p in model.named_parameters():
        if name in ref:
            err = (p.grad - ref[name]).norm() / ref[name].norm().clamp_min(floor)
            assert err <= 1e-4, f"{name}: relative error {err:.2e}"
    assert any("visual" in name for name in ref)  # the vision tower took part
