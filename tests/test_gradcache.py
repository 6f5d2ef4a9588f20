"""GradCache on one process: gradients equal those of the full batch, dropout replayed, plain path exact."""

import contextlib
import sys
from pathlib import Path

import pytest
import torch

from vlm2vec.chunking import equalize, num_rows, padding_counts, plan_chunks, row_lengths
from vlm2vec.gradcache import GradCache, RngState, split_batch
from vlm2vec.losses import ContrastiveLoss

sys.path.insert(0, str(Path(__file__).parent / "dist_scripts"))
from toy import make_batch, make_model  # noqa: E402

LOSS = ContrastiveLoss(temperature=0.05)


def grads_of(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_grads_close(ours, ref, rel=1e-5):
    """Relative error per parameter; gradients that are zero in exact arithmetic (attention key biases)
    are measured against 1e-3 of the largest gradient norm instead of their own rounding noise."""
    assert ours.keys() == ref.keys()
    floor = 1e-3 * max(g.norm() for g in ref.values())
    for name in ref:
        err = (ours[name] - ref[name]).norm() / ref[name].norm().clamp_min(floor)
        assert err <= rel, f"{name}: relative error {err:.2e}"


def forward_in_plan(model, side, batch, size, tokens=None, by_length=True, split=split_batch):
    """Reps of one side, forwarded with autograd chunk by chunk as GradCache plans them (same chunks in
    the same order, so the same dropout masks), put back in the batch's row order."""
    plan = plan_chunks(row_lengths(batch), size, tokens, by_length)
    if len(plan) == 1:
        plan = [list(range(num_rows(batch)))]
    key = "qry" if side == "qry" else "tgt"
    reps = torch.cat([model(**{key: c})[f"{key}_reps"] for c in split(batch, plan)])
    order = torch.tensor([r for rows in plan for r in rows])
    return reps[torch.argsort(order)]


def reference_grads(model, qry, tgt, neg, qcs, tcs, seed, loss_fn=LOSS, qtok=None, ttok=None, by_length=True):
    """Full-batch gradient with autograd through every chunk at once (same chunks, so same dropout)."""
    model.zero_grad()
    torch.manual_seed(seed)
    q = forward_in_plan(model, "qry", qry, qcs, qtok, by_length)
    t = forward_in_plan(model, "tgt", tgt, tcs, ttok, by_length)
    n = forward_in_plan(model, "neg", neg, tcs, ttok, by_length) if neg is not None else None
    loss = loss_fn(q, t, n)
    loss.backward()
    return loss.detach(), grads_of(model)


def gradcache_grads(
    model, qry, tgt, neg, qcs, tcs, seed, loss_fn=LOSS, qtok=None, ttok=None, by_length=True, **kwargs
):
    model.zero_grad()
    torch.manual_seed(seed)
    step = GradCache(
        loss_fn, qcs, tcs, qry_chunk_tokens=qtok, tgt_chunk_tokens=ttok, group_by_length=by_length, **kwargs
    )
    loss = step.step(model, qry, tgt, neg)
    return loss, grads_of(model)


@pytest.mark.parametrize(
    "qcs,tcs,with_neg,checkpointing,qtok,ttok,by_length",
    [
        (2, 3, False, False, None, None, True),
        (2, 3, False, False, None, None, False),
        (1, 4, True, False, None, None, True),
        (3, None, True, False, None, None, True),
        (2, 2, False, True, None, None, True),
        (4, 1, True, True, None, None, True),
        (None, None, True, False, 9, 7, True),  # token budgets only
        (3, 4, True, True, 8, 10, True),  # both limits
    ],
)
def test_gradcache_grads_equal_full_batch_grads_with_dropout(
    qcs, tcs, with_neg, checkpointing, qtok, ttok, by_length
):
    model = make_model(dropout=0.2, checkpointing=checkpointing).train()
    qry, tgt = make_batch(7, seed=1), make_batch(7, seed=2, pixels=False)
    neg = make_batch(14, seed=3, pixels=False) if with_neg else None
    kw = dict(qtok=qtok, ttok=ttok, by_length=by_length)
    loss, ours = gradcache_grads(model, qry, tgt, neg, qcs, tcs, seed=123, **kw)
    ref_loss, ref = reference_grads(model, qry, tgt, neg, qcs, tcs, seed=123, **kw)
    assert torch.allclose(loss, ref_loss, rtol=1e-6)
    assert_grads_close(ours, ref)


def test_gradcache_without_rng_replay_gives_different_grads(monkeypatch):
    """Control for the test above: with dropout, a forward that is not replayed breaks equality."""
    model = make_model(dropout=0.2).train()
    qry, tgt = make_batch(6, seed=1), make_batch(6, seed=2)
    _, ref = reference_grads(model, qry, tgt, None, 2, 2, seed=7)
    monkeypatch.setattr(RngState, "replay", lambda self: contextlib.nullcontext())
    _, ours = gradcache_grads(model, qry, tgt, None, 2, 2, seed=7)
    with pytest.raises(AssertionError):
        assert_grads_close(ours, ref)


def test_gradcache_without_dropout_equals_one_full_batch_forward():
    model = make_model(dropout=0.0).train()
    qry, tgt, neg = make_batch(8, seed=4), make_batch(8, seed=5), make_batch(8, seed=6)
    model.zero_grad()
    out = model(qry=qry, tgt=tgt, neg=neg)
    ref_loss = LOSS(out["qry_reps"], out["tgt_reps"], out["neg_reps"])
    ref_loss.backward()
    ref = grads_of(model)
    loss, ours = gradcache_grads(model, qry, tgt, neg, 3, 2, seed=0)
    assert torch.allclose(loss, ref_loss.detach(), rtol=1e-6)
    assert_grads_close(ours, ref)


class CountingModel(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, **sides):
        self.calls.append((torch.is_grad_enabled(), sorted(k for k, v in sides.items() if v is not None)))
        return self.inner(**sides)


@pytest.mark.parametrize("chunk", [None, 8, 100])
def test_chunk_at_least_batch_equals_plain_path_exactly_with_one_forward(chunk):
    qry, tgt, neg = make_batch(8, seed=7), make_batch(8, seed=8), make_batch(16, seed=9)
    model = make_model(dropout=0.2).train()
    counting = CountingModel(model)
    torch.manual_seed(3)
    loss = GradCache(LOSS, chunk, None if chunk is None else max(chunk, 16)).step(counting, qry, tgt, neg)
    ours = grads_of(model)
    assert counting.calls == [(True, ["neg", "qry", "tgt"])]  # one forward with grad, no extra pass
    model.zero_grad()
    torch.manual_seed(3)
    out = model(qry=qry, tgt=tgt, neg=neg)
    ref_loss = LOSS(out["qry_reps"], out["tgt_reps"], out["neg_reps"])
    ref_loss.backward()
    assert torch.equal(loss, ref_loss.detach())
    for name, grad in grads_of(model).items():
        assert torch.equal(ours[name], grad), name


def test_chunked_step_runs_two_passes_per_chunk():
    counting = CountingModel(make_model())
    GradCache(LOSS, 2, 4).step(counting, make_batch(4, seed=1), make_batch(4, seed=2))
    assert [g for g, _ in counting.calls] == [False] * 3 + [True] * 3  # 2 qry + 1 tgt chunks, twice


@pytest.mark.parametrize("tgt_pixels,last_side", [(True, "tgt"), (False, "qry")])
def test_last_replayed_chunk_runs_every_module_used_in_the_step(tgt_pixels, last_side):
    """The gradient-synchronising backward must cover the pixel branch even if targets are text-only."""
    counting = CountingModel(make_model())
    qry, tgt = make_batch(4, seed=1), make_batch(4, seed=2, pixels=tgt_pixels)
    GradCache(LOSS, 2, 2).step(counting, qry, tgt)
    replayed = [sides for grad, sides in counting.calls if grad]
    assert len(replayed) == 4 and replayed[-1] == [last_side]


def test_gradcache_with_single_process_accelerator_equals_reference():
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(make_model(dropout=0.1).train())
    qry, tgt = make_batch(6, seed=10), make_batch(6, seed=11)
    _, ours = gradcache_grads(model, qry, tgt, None, 4, 2, seed=5, accelerator=accelerator)
    _, ref = reference_grads(model, qry, tgt, None, 4, 2, seed=5)
    assert_grads_close(ours, ref)


def test_gradcache_under_bf16_autocast_matches_reference_under_autocast():
    model = make_model(dropout=0.1).train()
    qry, tgt = make_batch(6, seed=12), make_batch(6, seed=13)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, ours = gradcache_grads(model, qry, tgt, None, 2, 3, seed=9)
        _, ref = reference_grads(model, qry, tgt, None, 2, 3, seed=9)
    assert_grads_close(ours, ref, rel=2e-2)  # bf16 rounding differs between no-grad and grad passes


def test_step_leaves_global_rng_where_the_first_pass_left_it():
    """Replays run in a forked RNG, so a step consumes random numbers like one pass of plain training."""
    model = make_model(dropout=0.1).train()
    qry, tgt = make_batch(4, seed=1), make_batch(4, seed=2)
    torch.manual_seed(0)
    with torch.no_grad():
        forward_in_plan(model, "qry", qry, 2)
        forward_in_plan(model, "tgt", tgt, 2)
    expected = torch.rand(3)
    torch.manual_seed(0)
    GradCache(LOSS, 2, 2).step(model, qry, tgt)
    assert torch.equal(torch.rand(3), expected)


def test_split_batch_slices_every_tensor_and_list_on_dim0():
    batch = make_batch(5, seed=0) | {"ids": list(range(5)), "flag": True}
    parts = split_batch(batch, 2)
    assert [num_rows(p) for p in parts] == [2, 2, 1]
    assert parts[2]["ids"] == [4] and parts[1]["flag"] is True
    assert torch.equal(torch.cat([p["pixel_values"] for p in parts]), batch["pixel_values"])


def test_split_batch_rejects_tensors_that_are_not_per_row():
    batch = make_batch(4, seed=0) | {"pixel_values": torch.zeros(9, 3), "image_grid_thw": torch.ones(2, 3)}
    with pytest.raises(ValueError, match="row_spans"):
        split_batch(batch, 2)


def test_custom_split_fn_is_used():
    seen = []

    def split(inputs, plan):
        seen.append([len(rows) for rows in plan])
        return split_batch(inputs, plan)

    GradCache(LOSS, 2, 3, split_fn=split).step(make_model(), make_batch(4, seed=1), make_batch(4, seed=2))
    # each chunk is cut when a pass needs it (and dropped after): plans [2, 2] and [3, 1], both passes
    assert seen == [[2], [2], [3], [1]] * 2


def test_invalid_chunk_size_raises():
    with pytest.raises(ValueError, match="qry_chunk_size"):
        GradCache(LOSS, 0, 2)


# ------------------------------------------------------------------------------------ tiny real models
QRY_TEXTS = [
    "<|image_1|> Represent the given image for classification",
    "a red circle on a striped background",
    "<|image_1|> Find a caption for this image",
    "<|image_1|> What colour is the shape?",
    "find the blue one",
]
TGT_TEXTS = ["red", "<|image_1|> the matching picture", "a caption", "green", "<|image_1|> blue ellipse"]


def enable_dropout(model: torch.nn.Module, p: float) -> None:
    """Tiny checkpoints have dropout 0: switch on attention and module dropout to exercise RNG replay."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = p


@pytest.fixture(scope="module")
def tiny_phi3v_dir(tmp_path_factory):
    from vlm2vec.testing import make_tiny_checkpoint

    return make_tiny_checkpoint("phi3_v", tmp_path_factory.mktemp("tiny_phi3_v"))


def tiny_vlm(request, backbone, tiny_images, checkpointing=False, dropout=0.1):
    """A tiny VLM in train mode and a mixed image / text batch (rows of very different lengths)."""
    from vlm2vec import EmbeddingModel
    from vlm2vec.testing import tiny_model_config

    folder = request.getfixturevalue("tiny_qwen_dir" if backbone == "qwen2_vl" else "tiny_phi3v_dir")
    cfg = tiny_model_config(backbone, folder, gradient_checkpointing=checkpointing)
    model = EmbeddingModel.from_config(cfg).train()
    enable_dropout(model, dropout)
    im = tiny_images
    qry = model.processor(QRY_TEXTS, [[im[0]], [], [im[1]], [im[2]], []])
    tgt = model.processor(TGT_TEXTS, [[], [im[0]], [], [], [im[1]]])
    return model, qry, tgt


def token_budgets(qry, tgt):
    """Budgets that give image rows chunks of their own and pack short text rows together."""
    return 2 * max(row_lengths(qry)), max(row_lengths(tgt)) + 3


@pytest.mark.parametrize("backbone", ["qwen2_vl", "phi3_v"])
@pytest.mark.parametrize(
    "checkpointing,limit", [(False, "rows"), (True, "rows"), (False, "tokens"), (True, "tokens")]
)
def test_gradcache_grads_equal_full_batch_grads_on_tiny_vlm_with_dropout(
    backbone, checkpointing, limit, request, tiny_images
):
    model, qry, tgt = tiny_vlm(request, backbone, tiny_images, checkpointing)
    qcs, tcs, (qtok, ttok) = (
        (2, 3, (None, None)) if limit == "rows" else (None, None, token_budgets(qry, tgt))
    )

    def reference(seed):
        model.zero_grad()
        torch.manual_seed(seed)
        q = forward_in_plan(model, "qry", qry, qcs, qtok, split=model.split_batch)
        t = forward_in_plan(model, "tgt", tgt, tcs, ttok, split=model.split_batch)
        loss = LOSS(q, t)
        loss.backward()
        return loss.detach(), grads_of(model)

    ref_loss, ref = reference(seed=11)
    _, other_seed = reference(seed=12)
    assert any(not torch.equal(ref[n], other_seed[n]) for n in ref)  # dropout is really on
    model.zero_grad()
    torch.manual_seed(11)
    step = GradCache(LOSS, qcs, tcs, split_fn=model.split_batch, qry_chunk_tokens=qtok, tgt_chunk_tokens=ttok)
    loss = step.step(model, qry, tgt)
    assert torch.allclose(loss, ref_loss, rtol=1e-6)
    assert_grads_close(grads_of(model), ref)


@pytest.mark.parametrize("backbone", ["qwen2_vl", "phi3_v"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_length_grouped_trimmed_chunks_equal_one_padded_full_batch_and_cut_padding(
    backbone, padding_side, request, tiny_images
):
    """Without dropout, regrouped and trimmed chunks give the gradient of one forward of the whole
    padded batch (so trimming keeps positions and image tensors consistent), with fewer padded tokens."""
    model, _, _ = tiny_vlm(request, backbone, tiny_images, dropout=0.0)
    im = tiny_images
    qry = model.processor(QRY_TEXTS, [[im[0]], [], [im[1]], [im[2]], []], padding_side=padding_side)
    tgt = model.processor(TGT_TEXTS, [[], [im[0]], [], [], [im[1]]], padding_side=padding_side)
    model.zero_grad()
    out = model(qry=qry, tgt=tgt)
    ref_loss = LOSS(out["qry_reps"], out["tgt_reps"])
    ref_loss.backward()
    ref = grads_of(model)
    model.zero_grad()
    qtok, ttok = token_budgets(qry, tgt)
    step = GradCache(LOSS, split_fn=model.split_batch, qry_chunk_tokens=qtok, tgt_chunk_tokens=ttok)
    loss = step.step(model, qry, tgt)
    assert torch.allclose(loss, ref_loss.detach(), rtol=1e-6)
    assert_grads_close(grads_of(model), ref)
    real, padded = step.last_padding
    full_real, full_padded = padding_counts([qry, tgt])
    assert real == full_real and 2 * padded <= full_padded


def test_bench_script_shows_flat_gradcache_activation_memory(capsys):
    import importlib.util

    path = Path(__file__).parents[1] / "scripts" / "bench_gradcache.py"
    spec = importlib.util.spec_from_file_location("bench_gradcache", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = "--hidden 64 --layers 1 --heads 2 --seq 16 --batch 8 --chunk 4 --repeats 1 --warmup 0"
    result = bench.main([*args.split(), "--mem-batches", "8,16,32", "--mem-chunk", "4"])
    plain = [row["plain_saved_mib"] for row in result["memory"]]
    cached = [row["gradcache_saved_mib"] for row in result["memory"]]
    assert plain[2] > 3.5 * plain[0]  # plain activations grow with the batch
    assert cached[2] < 1.1 * cached[0] and cached[0] < plain[0]  # GradCache: one chunk's worth
    assert result["timing"]["ratio"] > 0


@pytest.mark.parametrize("qcs,tcs", [(2, 3), (7, 5)])
def test_gradcache_with_k_negatives_masking_and_hardness_equals_full_batch(qcs, tcs):
    """k = 3 hard negatives per query, chunked like targets (some chunks straddle queries), with
    false-negative masking by content key and hardness weighting: GradCache = full-batch gradients."""
    import functools

    k = 3
    model = make_model(dropout=0.2).train()
    qry, tgt, neg = make_batch(7, seed=1), make_batch(7, seed=2, pixels=False), make_batch(7 * k, seed=3)
    tgt_keys = torch.tensor([0, 1, 2, 0, 3, 4, 5])  # targets 0 and 3 share content
    neg_keys = torch.arange(10, 10 + 7 * k)
    neg_keys[4] = 2  # a negative of query 1 is query 2's positive: masked for query 2
    loss_fn = functools.partial(
        ContrastiveLoss(temperature=0.05, mask_false_negatives=True, hardness_alpha=4.0),
        tgt_keys=tgt_keys,
        neg_keys=neg_keys,
    )
    loss, ours = gradcache_grads(model, qry, tgt, neg, qcs, tcs, seed=11, loss_fn=loss_fn)
    ref_loss, ref = reference_grads(model, qry, tgt, neg, qcs, tcs, seed=11, loss_fn=loss_fn)
    assert torch.allclose(loss, ref_loss, rtol=1e-6)
    assert_grads_close(ours, ref)


def test_plan_groups_by_length_and_keeps_each_chunk_within_its_budget():
    lengths = [3, 40, 2, 38, 5, 1, 39]
    plan = plan_chunks(lengths, max_tokens=80)
    assert sorted(r for rows in plan for r in rows) == list(range(len(lengths)))  # every row once
    assert all(len(rows) * max(lengths[r] for r in rows) <= 80 for rows in plan)
    assert plan == [[1, 6], [3, 4], [0, 2, 5]]  # longest first, packed greedily
    assert plan_chunks(lengths, max_rows=3, by_length=False) == [[0, 1, 2], [3, 4, 5], [6]]
    assert plan_chunks([100, 1], max_tokens=10) == [[0], [1]]  # a row over budget gets its own chunk


def test_equalize_splits_chunks_up_to_the_agreed_count_and_refuses_the_impossible():
    lengths = [3, 40, 2, 38, 5, 1, 39]
    plan = equalize(plan_chunks(lengths, max_tokens=80), 6, lengths)
    assert len(plan) == 6 and sorted(r for rows in plan for r in rows) == list(range(7))
    with pytest.raises(ValueError, match="same number of rows"):
        equalize([[0], [1]], 3, [1, 1])
