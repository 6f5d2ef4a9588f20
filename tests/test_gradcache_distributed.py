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


def chunked(batch, rows, size):
    size = size or rows
    return [take(batch, s, s + size) for s in range(0, rows, size)]


def reference_update(rows, qcs, tcs, negs, dropout, lr, tgt_pixels):
    """One process, whole global batch, plain autograd; rank r's chunks forwarded from seed 100 + r."""
    model = make_model(dropout=dropout).train()
    qry, tgt, neg = global_batches(WORLD, rows, negs, tgt_pixels)
    q, t, n = [], [], []
    for rank in range(WORLD):
        lo, hi = rank * rows, (rank + 1) * rows
        torch.manual_seed(100 + rank)
        q += [model(qry=c)["qry_reps"] for c in chunked(take(qry, lo, hi), rows, qcs)]
        t += [model(tgt=c)["tgt_reps"] for c in chunked(take(tgt, lo, hi), rows, tcs)]
        if negs:
            local_neg = take(neg, lo * negs, hi * negs)
            n += [model(tgt=c)["tgt_reps"] for c in chunked(local_neg, rows * negs, tcs)]
    loss = ContrastiveLoss(TEMPERATURE)(torch.cat(q), torch.cat(t), torch.cat(n) if negs else None)
    loss.backward()
    return loss.item(), {name: -lr * p.grad for name, p in model.named_parameters()}


def assert_same_update(result_file, ref_loss, ref_delta, rel=1e-5):
    result = torch.load(result_file)
    assert abs(result["loss"] - ref_loss) <= 1e-5 * abs(ref_loss)
    for name, ref in ref_delta.items():
        err = (result["delta"][name] - ref).norm() / ref.norm()
        assert err <= rel, f"{name}: relative error {err:.2e}"


CASES = {
    # mode: (qry chunk, tgt chunk, hard negatives per query, targets have pixels)
    "ddp_accelerate": (2, 4, 0, True),
    "ddp_raw": (2, 3, 2, False),  # text-only targets: a qry chunk (pixels) must be replayed last; k=2
    "zero2": (2, 4, 3, True),  # k = 3 negatives per query, chunked like targets
    "zero3": (4, 2, 1, True),
    "zero3_offload": (3, 2, 1, True),  # offload finalises only params of the last backward: same need
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(CASES))
def test_two_process_step_equals_one_process_on_global_batch(tmp_path, mode):
    qcs, tcs, negs, tgt_pixels = CASES[mode]
    rows, dropout, lr = 6, 0.1, 0.5
    result = run_workers(
        tmp_path, "--mode", mode, "--rows", str(rows), "--qcs", str(qcs), "--tcs", str(tcs),
        "--negs", str(negs), "--dropout", str(dropout), "--lr", str(lr),
    )  # fmt: skip
    ref_loss, ref_delta = reference_update(rows, qcs, tcs, negs, dropout, lr, tgt_pixels)
    assert_same_update(result, ref_loss, ref_delta)


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
