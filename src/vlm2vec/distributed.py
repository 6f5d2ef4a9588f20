"""Cross-rank gathers for the contrastive loss.

The loss needs every rank's representations (every target of the global batch is a negative), but
each rank may only back-propagate into its own shard: the other shards' gradients are produced by
their own ranks. `gather_with_grad` therefore all-gathers values and puts the local tensor itself (with
its autograd history) back in its slot, so the backward pass needs no collective at all.

Ranks may hold different numbers of rows (a last, smaller batch): sizes are exchanged first and rows
padded to the largest, so concatenation order is always rank 0's rows, then rank 1's, and so on.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world_size) of the default process group; (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_gather_padded(x: torch.Tensor) -> list[torch.Tensor]:
    """All-gather `x` along dim 0 allowing a different row count per rank; returns one tensor per rank."""
    _, size = world()
    x = x.contiguous()
    rows = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    all_rows = [torch.zeros_like(rows) for _ in range(size)]
    dist.all_gather(all_rows, rows)
    counts = [int(r.item()) for r in all_rows]
    longest = max(counts)
    if x.shape[0] < longest:
        pad = x.new_zeros((longest - x.shape[0], *x.shape[1:]))
        x = torch.cat([x, pad])
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x)
    return [part[:n] for part, n in zip(parts, counts)]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every rank (rank order); only the local rows keep their gradient."""
    rank, size = world()
    if size == 1:
        return x
    with torch.no_grad():
        parts = _all_gather_padded(x.detach())
    parts[rank] = x
    return torch.cat(parts)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` (e.g. integer keys) from every rank in rank order, without autograd."""
    _, size = world()
    if size == 1:
        return x
    with torch.no_grad():
        return torch.cat(_all_gather_padded(x))


class _ScaleGrad(torch.autograd.Function):
    """Identity on the value, multiplies the gradient by a constant."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:  # type: ignore[override]
        ctx.factor = factor
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad * ctx.factor, None


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Return `x` unchanged but with its gradient multiplied by `factor`.

    Used to undo the 1/world_size of DDP / DeepSpeed gradient averaging while the logged loss value
    stays the true global loss.
    """
    if factor == 1:
        return x
    return _ScaleGrad.apply(x, factor)
