"""FSDP2's export gather on 2 CPU processes (gloo), on a toy model with a weight two modules share.

Launched by tests/test_fsdp2.py with `torchrun --nproc_per_node 2`. The toy names its block class in
`_no_split_modules` (as transformers models do), so `shard_model` makes the block one FSDP unit and the
model the root; its embedding and output head share one weight (tied embeddings). Inside
`full_parameters` rank 0's `state_dict` must hold every key as a full, plain tensor equal to the
weights before sharding, the tied pair as one tensor; afterwards the parameters are shards again.
Writes `<out>.rank<r>` (torch.save of a dict).
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
from ending import run_and_exit
from torch import nn
from torch.distributed.tensor import DTensor

from vlm2vec.training.fsdp2 import full_parameters, shard_model


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.proj(x))


class TiedToy(nn.Module):
    _no_split_modules = ["Block"]

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(6, 10, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    args = p.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = TiedToy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    shard_model(model)
    model(torch.tensor([[1, 2, 3]])).sum().backward()  # a forward and backward leave shards behind
    with full_parameters(model, keep=rank == 0):
        state = model.state_dict() if rank == 0 else {}
        result = {
            "before": before,
            "state": {k: v.clone() for k, v in state.items()},
            "plain": all(not isinstance(v, DTensor) for v in state.values()),
            "tied": rank != 0 or model.head.weight is model.embed.weight,
        }
    result["sharded_after"] = all(isinstance(p, DTensor) for p in model.parameters())
    result["units"] = sum(hasattr(m, "set_requires_gradient_sync") for m in model.modules())
    torch.save(result, f"{args.out}.rank{rank}")
    dist.barrier()


if __name__ == "__main__":
    run_and_exit(main)
