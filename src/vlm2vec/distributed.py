"""Who the other processes are and how to exchange data with them: process state, gathers, barrier.

Two kinds of exchange run over the same processes. The contrastive loss needs every rank's
representations (every target of the global batch is a negative), but each rank may only
back-propagate into its own shard: `gather_with_grad` all-gathers values and puts the local tensor
itself (with its autograd history) back in its slot, so the backward pass needs no collective at all.
Ranks may hold different numbers of rows (a last, smaller batch): sizes are exchanged first and rows
padded to the largest, so concatenation order is always rank 0's rows, then rank 1's, and so on.
Encoding (evaluation, corpus embedding) deals batches to the processes of a `ProcessState` and
gathers plain Python objects (`gather_objects`), with a `barrier` before files written by the main
process are read by the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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


class ProcessState(Protocol):
    """What encoding needs from `accelerate.PartialState` (or `SingleProcess`, its stand-in)."""

    num_processes: int
    process_index: int

    @property
    def is_main_process(self) -> bool: ...


@dataclass
class SingleProcess:
    """The state of a process that runs alone."""

    num_processes: int = 1
    process_index: int = 0
    is_main_process: bool = True


def process_state(join_launch: bool = False) -> ProcessState:
    """This process's place among the processes of the run.

    With `join_launch` (the commands: evaluate, embed, mine) accelerate's `PartialState` is built,
    which joins a torchrun / accelerate launch and has a `device` (the CPU when there is no GPU).
    Without it (library calls), a running process group is used as it is and a lone process gets a
    `SingleProcess`, so no accelerate state is created behind the caller's back.
    """
    if join_launch or (dist.is_available() and dist.is_initialized()):
        from accelerate import PartialState

        return PartialState(cpu=not torch.cuda.is_available())
    return SingleProcess()


def gather_objects(obj: list, state: ProcessState) -> list:
    """Concatenate every process's list in process order (every process must call it)."""
    if state.num_processes == 1:
        return obj
    from accelerate.utils import gather_object

    return gather_object(obj)


def barrier(state: ProcessState) -> None:
    """Wait until every process is here (a no-op for one process or a state without a barrier)."""
    wait = getattr(state, "wait_for_everyone", None)
    if state.num_processes > 1 and wait is not None:
        wait()
