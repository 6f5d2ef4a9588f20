"""One GradCache training step on 2+ CPU processes (gloo); rank 0 saves the parameter update.

Launched by tests/test_gradcache_distributed.py with `torchrun --nproc_per_node 2`. Modes:
  ddp_accelerate  accelerate's DDP (Accelerator(cpu=True))
  ddp_raw         torch DDP without accelerate, find_unused_parameters=False, and text-only targets
                  and negatives: GradCache must replay a chunk with pixels last for DDP to reduce all
  fsdp2           torch FSDP2 as train.engine fsdp2 applies it (vlm2vec.training.fsdp2.shard_model), no
                  accelerate; the optimizer is built over the shards
  zero*           DeepSpeed through accelerate (default Accelerator + DeepSpeedPlugin, gloo) with the
                  project's configs/deepspeed/<mode>.json
  loss            no model: ContrastiveLoss on uneven shards (3 rows on rank 0, 2 on the others);
                  every rank saves its loss and the gradient of its local reps

The global batch is built identically on every rank and sliced by rank; rank r seeds its RNG with
100 + r right before the step, so the test can replay the same dropout masks in one process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
from ending import run_and_exit
from toy import make_batch, make_model, take  # noqa: E402

from vlm2vec.gradcache import GradCache  # noqa: E402
from vlm2vec.losses import ContrastiveLoss  # noqa: E402

TEMPERATURE = 0.05
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "deepspeed"
ENGINES = ["ddp_accelerate", "ddp_raw", "fsdp2", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload"]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", required=True, choices=[*ENGINES, "loss"])
    p.add_argument("--out", required=True)
    p.add_argument("--rows", type=int, default=6, help="rows per rank")
    p.add_argument("--qcs", type=int, default=None)
    p.add_argument("--tcs", type=int, default=None)
    p.add_argument("--negs", type=int, default=0, help="hard negatives per query")
    p.add_argument("--qtok", type=int, default=None, help="query chunk token budget")
    p.add_argument("--ttok", type=int, default=None, help="target chunk token budget")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=0.5)
    return p.parse_args()


def global_batches(world: int, rows: int, negs: int, tgt_pixels: bool):
    n = world * rows
    qry = make_batch(n, seed=1)
    tgt = make_batch(n, seed=2, pixels=tgt_pixels)
    neg = make_batch(n * negs, seed=3, pixels=False) if negs else None
    return qry, tgt, neg


def prepare(mode: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rows: int):
    """Wrap model and optimizer for the engine under test; returns (model, optimizer, accelerator)."""
    if mode == "fsdp2":
        from vlm2vec.training.fsdp2 import shard_model

        dist.init_process_group("gloo")
        shard_model(model)
        return model, type(optimizer)(model.parameters(), **optimizer.defaults), None
    if mode == "ddp_raw":
        from torch.nn.parallel import DistributedDataParallel

        dist.init_process_group("gloo")
        return DistributedDataParallel(model, find_unused_parameters=False), optimizer, None
    from accelerate import Accelerator

    if mode == "ddp_accelerate":
        accelerator = Accelerator(cpu=True)
    else:
        import deepspeed
        from accelerate.utils import DeepSpeedPlugin, InitProcessGroupKwargs

        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
        # the project's own config file; "auto" values are filled by accelerate, except these two
        config = json.loads((CONFIGS / f"{mode}.json").read_text())
        config["train_micro_batch_size_per_gpu"] = rows  # no dataloader is prepared to infer it from
        config["gradient_clipping"] = 0.0  # accelerate turns "auto" into 1.0: keep SGD updates raw
        accelerator = Accelerator(
            deepspeed_plugin=DeepSpeedPlugin(hf_ds_config=config),
            kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")],
        )
    model, optimizer = accelerator.prepare(model, optimizer)
    return model, optimizer, accelerator


def full_params(mode: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    if mode == "fsdp2":
        return {n: p.full_tensor().detach().clone() for n, p in model.named_parameters()}
    inner = model.module
    if mode.startswith("zero3"):
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(inner.parameters())):
            return {n: p.detach().clone() for n, p in inner.named_parameters()}
    return {n: p.detach().clone() for n, p in inner.named_parameters()}


@contextlib.contextmanager
def count_fsdp2_reductions():
    """Records each gradient reduce-scatter FSDP2 issues inside the block (torch's internal
    `foreach_reduce`, called once per FSDP unit per synchronising backward)."""
    from torch.distributed.fsdp._fully_shard import _fsdp_param_group as group

    calls: list[int] = []
    original = group.foreach_reduce

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    group.foreach_reduce = counted
    try:
        yield calls
    finally:
        group.foreach_reduce = original


def run_train(args: argparse.Namespace) -> None:
    model = make_model(dropout=args.dropout)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    model, optimizer, accelerator = prepare(args.mode, model, optimizer, args.rows)
    rank, world = dist.get_rank(), dist.get_world_size()
    qry, tgt, neg = global_batches(world, args.rows, args.negs, tgt_pixels=args.mode != "ddp_raw")
    lo, hi = rank * args.rows, (rank + 1) * args.rows
    local_neg = take(neg, lo * args.negs, hi * args.negs) if neg is not None else None

    model.train()
    torch.manual_seed(100 + rank)
    step = GradCache(
        ContrastiveLoss(TEMPERATURE),
        args.qcs,
        args.tcs,
        accelerator=accelerator,
        qry_chunk_tokens=args.qtok,
        tgt_chunk_tokens=args.ttok,
    )
    with count_fsdp2_reductions() as reductions:
        loss = step.step(model, take(qry, lo, hi), take(tgt, lo, hi), local_neg)
    optimizer.step()  # under accelerate + DeepSpeed the engine already stepped; this is a no-op
    optimizer.zero_grad()

    after = full_params(args.mode, model)
    if rank == 0:
        delta = {n: after[n] - before[n] for n in before}
        torch.save({"delta": delta, "loss": loss.item(), "reductions": len(reductions)}, args.out)


def run_loss(args: argparse.Namespace) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    counts = [3] + [2] * (world - 1)
    lo, hi = sum(counts[:rank]), sum(counts[: rank + 1])
    g = torch.Generator().manual_seed(0)
    total = sum(counts)
    q, t, n = (
        torch.nn.functional.normalize(torch.randn(rows, 8, generator=g), dim=-1)
        for rows in (total, total, 2 * total)
    )
    keys = torch.tensor([i % 3 for i in range(total)])
    local = [x[lo:hi].clone().requires_grad_(True) for x in (q, t)] + [
        n[2 * lo : 2 * hi].clone().requires_grad_(True)
    ]
    loss_fn = ContrastiveLoss(TEMPERATURE, mask_false_negatives=True, symmetric=True)
    loss = loss_fn(
        *local,
        qry_keys=keys[lo:hi],
        tgt_keys=keys[lo:hi],
        neg_keys=keys.repeat_interleave(2)[2 * lo : 2 * hi],
    )
    grads = torch.autograd.grad(loss, local)
    torch.save({"loss": loss.item(), "grads": grads, "rows": (lo, hi)}, f"{args.out}.rank{rank}")


def main() -> None:
    args = parse()
    torch.set_num_threads(1)
    if args.mode == "loss":
        run_loss(args)
    else:
        run_train(args)
    dist.barrier()


if __name__ == "__main__":
    run_and_exit(main)
