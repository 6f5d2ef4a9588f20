"""Two CPU processes (gloo): one GradCache step gives the update of one process on the global batch.

Each case launches tests/dist_scripts/gc_worker.py with torchrun and compares rank 0's parameter update
(SGD, so update = -lr * gradient: a wrong gradient scale shows, unlike with Adam) with a reference
computed here in one process. Dropout is on: rank r seeds 100 + r before its step, and the reference
forwards rank r's chunks (with autograd, no GradCache) in the same order from the same seed, so both see
the same dropout masks. This checks the RNG replay, the cross-rank gather, the world_size gradient
scale and the engines' gradient synchronisation together.
"""

import sys
from pathlib import Path

import pytest
import torch

from launching import launch
from vlm2vec.chunking import equalize, plan_chunks, row_lengths
from vlm2vec.gradcache import split_batch
from vlm2vec.losses import ContrastiveLoss

SCRIPTS = Path(__file__).parent / "dist_scripts"
sys.path.insert(0, str(SCRIPTS))
from gc_worker import TEMPERATURE, global_batches  # noqa: E402
from toy import make_model, take  # noqa: E402

WORLD = 2


def run_workers(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "result.pt"
    launch(SCRIPTS / "gc_worker.py", "--out", str(out), *args, nproc=WORLD)
    return out


def rank_plans(batches, size, tokens):
    """Each rank's GradCache plan of one side: length-grouped, then brought to the ranks' largest count."""
    lengths = [row_lengths(b) for b in batches]
    plans = [plan_chunks(n, size, tokens) for n in lengths]
    count = max(len(p) for p in plans)
    if count == 1:
        return [[list(range(len(n)))] for n in lengths], [1, 1]
    return [equalize(p, count, n) for p, n in zip(plans, lengths)], [len(p) for p in plans]


def forward_plan(model, key, batch, plan):
    reps = torch.cat([model(**{key: c})[f"{key}_reps"] for c in split_batch(batch, plan)])
    return reps[torch.argsort(torch.tensor([r for rows in plan for r in rows]))]


def reference_update(rows, qcs, tcs, negs, dropout, lr, tgt_pixels, qtok=None, ttok=None):
    """One process, whole global batch, plain autograd; rank r's chunks forwarded from seed 100 + r.

    Also returns, per side, the chunk counts the ranks' own plans had before agreeing on one."""
    model = make_model(dropout=dropout).train()
    qry, tgt, neg = global_batches(WORLD, rows, negs, tgt_pixels)
    shards = {
        "qry": [take(qry, r * rows, (r + 1) * rows) for r in range(WORLD)],
        "tgt": [take(tgt, r * rows, (r + 1) * rows) for r in range(WORLD)],
    }
    if negs:
        shards["neg"] = [take(neg, r * rows * negs, (r + 1) * rows * negs) for r in range(WORLD)]
    limits = {"qry": (qcs, qtok), "tgt": (tcs, ttok), "neg": (tcs, ttok)}
    planned = {side: rank_plans(parts, *limits[side]) for side, parts in shards.items()}
    if all(len(p) == 1 for plans, _ in planned.values() for p in plans):  # plain path on every rank
        planned = {s: ([[list(range(len(parts[r]["input_ids"])))] for r in range(WORLD)], c)
                   for (s, parts), (_, c) in zip(shards.items(), planned.values())}  # fmt: skip
    reps = {side: [] for side in shards}
    for rank in range(WORLD):
        torch.manual_seed(100 + rank)
        for side, parts in shards.items():
            key = "qry" if side == "qry" else "tgt"
            reps[side].append(forward_plan(model, key, parts[rank], planned[side][0][rank]))
    cat = {side: torch.cat(r) for side, r in reps.items()}
    loss = ContrastiveLoss(TEMPERATURE)(cat["qry"], cat["tgt"], cat.get("neg"))
    loss.backward()
    counts = {side: c for side, (_, c) in planned.items()}
    return loss.item(), {name: -lr * p.grad for name, p in model.named_parameters()}, counts


def assert_same_update(result_file, ref_loss, ref_delta, rel=1e-5):
    result = torch.load(result_file)
    assert abs(result["loss"] - ref_loss) <= 1e-5 * abs(ref_loss)
    for name, ref in ref_delta.items():
        err = (result["delta"][name] - ref).norm() / ref.norm()
        assert err <= rel, f"{name}: relative error {err:.2e}"


CASES = {
    # mode: (qry chunk rows, tgt chunk rows, hard negatives per query, targets have pixels,
    #        qry / tgt chunk token budgets)
    "ddp_accelerate": (2, 4, 0, True, None, None),
    "ddp_raw": (None, None, 2, False, 9, 8),  # text-only targets: a qry chunk (pixels) must be replayed last
    "fsdp2": (2, 4, 2, True, None, None),  # gradient sync off on all chunks but the last
    "zero2": (2, 4, 3, True, None, None),  # k = 3 negatives per query, chunked like targets
    "zero3": (None, 4, 1, True, 8, 9),  # token budgets: the ranks' own plans differ in chunk count
    "zero3_offload": (3, 2, 1, True, None, None),  # offload finalises only params of the last backward
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(CASES))
def test_two_process_step_equals_one_process_on_global_batch(tmp_path, mode):
    """Length-grouped chunks (by rows or by token budget) on every engine; with token budgets the ranks'
    plans start with different chunk counts, so the agreed count (all_reduce) is exercised too."""
    qcs, tcs, negs, tgt_pixels, qtok, ttok = CASES[mode]
    rows, dropout, lr = 6, 0.1, 0.5
    limits = [f"--{k}={v}" for k, v in (("qcs", qcs), ("tcs", tcs), ("qtok", qtok), ("ttok", ttok)) if v]
    result = run_workers(
        tmp_path, "--mode", mode, "--rows", str(rows), *limits,
        "--negs", str(negs), "--dropout", str(dropout), "--lr", str(lr),
    )  # fmt: skip
    ref_loss, ref_delta, counts = reference_update(rows, qcs, tcs, negs, dropout, lr, tgt_pixels, qtok, ttok)
    if qtok or ttok:
        assert any(len(set(c)) > 1 for c in counts.values()), counts  # the agreement has work to do
    assert_same_update(result, ref_loss, ref_delta)
    if mode == "fsdp2":  # the toy is one FSDP unit: one reduce-scatter per step, not one per chunk
        assert torch.load(result)["reductions"] == 1


@pytest.mark.slow
def test_gathered_loss_on_uneven_shards_equals_global_loss_and_scales_local_grads(tmp_path):
    out = run_workers(tmp_path, "--mode", "loss")
    g = torch.Generator().manual_seed(0)
    total = 3 + 2 * (WORLD - 1)
    q, t, n = (
        torch.nn.functional.normalize(torch.randn(r, 8, generator=g), dim=-1).requires_grad_(True)
        for r in (total, total, 2 * total)
    )
    keys = torch.tensor([i % 3 for i in range(total)])
    loss_fn = ContrastiveLoss(TEMPERATURE, mask_false_negatives=True, symmetric=True)
    loss = loss_fn(q, t, n, qry_keys=keys, tgt_keys=keys, neg_keys=keys.repeat_interleave(2))
    grads = torch.autograd.grad(loss, [q, t, n])
    for rank in range(WORLD):
        result = torch.load(f"{out}.rank{rank}")
        lo, hi = result["rows"]
        assert abs(result["loss"] - loss.item()) <= 1e-6 * abs(loss.item())
        expected = [grads[0][lo:hi], grads[1][lo:hi], grads[2][2 * lo : 2 * hi]]
        for ours, ref in zip(result["grads"], expected):
            assert torch.allclose(ours, WORLD * ref, rtol=1e-5, atol=1e-7)  # x world_size: DDP averages
