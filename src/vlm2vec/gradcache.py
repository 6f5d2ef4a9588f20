"""GradCache: contrastive training with a large batch in the activation memory of one chunk.

The contrastive loss couples every query with every target, so the batch cannot simply be split into
gradient-accumulation micro-batches. GradCache (Gao et al., 2021) splits the gradient instead:

1. forward every chunk without autograd, keep its reps and the RNG state it started from;
2. compute the loss on the full (gathered) reps and back-propagate to the reps only;
3. per chunk, forward again under the saved RNG state (same dropout masks) and back-propagate
   `sum(reps * d loss / d reps)`; the parameter gradients add up to the full-batch gradient.

One code path serves every engine. The only engine-specific part is how a chunk's backward is issued
(`_Backward`): under DDP all but the last backward run in `no_sync` so gradients are all-reduced once
(under FSDP2 with gradient sync off: reduce-scattered once);
under DeepSpeed the gradient-accumulation boundary is False for all but the last backward (ZeRO-1
reduces once; ZeRO-2/3 reduce-scatter gradient partitions on every backward, by design); with an
`accelerate.Accelerator` its `backward` and `no_sync` are used, so mixed precision, gradient
accumulation and accelerate's DeepSpeed step behave as in any accelerate loop.

When every side fits in one chunk the step is plain training: one forward with autograd, one backward,
no extra pass. The training loop always calls `GradCache.step`, then clips and steps the optimizer.
See docs/gradcache.md.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import FSDPModule

from .chunking import Plan, equalize, num_rows, padding_counts, plan_chunks, row_lengths, split_rows
from .distributed import world

Batch = dict[str, Any]
SplitFn = Callable[[Batch, Plan], list[Batch]]
SIDES = ("qry", "tgt", "neg")


def split_batch(inputs: Batch, chunks: int | Plan) -> list[Batch]:
    """Default splitter for models without a backbone (every tensor and list has one entry per row):
    `chunking.split_rows` without image spans. Backbone models pass `EmbeddingModel.split_batch`."""
    return split_rows(inputs, chunks)


class RngState:
    """The CPU and CUDA RNG states at a point in time, to replay a forward pass with the same dropout."""

    def __init__(self, inputs: Batch) -> None:
        self.cpu = torch.get_rng_state()
        devices = {v.device.index for v in inputs.values() if isinstance(v, torch.Tensor) and v.is_cuda}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            devices.add(torch.cuda.current_device())
        self.devices = sorted(d for d in devices if d is not None)
        self.cuda = [torch.cuda.get_rng_state(d) for d in self.devices]

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """Run the block from the saved states; the RNG states outside the block are left untouched."""
        with torch.random.fork_rng(devices=self.devices):
            torch.set_rng_state(self.cpu)
            for device, state in zip(self.devices, self.cuda):
                torch.cuda.set_rng_state(state, device)
            yield


def _deepspeed_engine(model: nn.Module) -> Any | None:
    """The model itself when it is a DeepSpeed engine (checked without importing deepspeed)."""
    deepspeed = sys.modules.get("deepspeed")
    if deepspeed is not None and isinstance(model, deepspeed.DeepSpeedEngine):
        return model
    return None


class _Backward:
    """Issues each chunk's backward so that gradients are synchronised across ranks once, at the end."""

    def __init__(self, model: nn.Module, accelerator: Any | None) -> None:
        self.model = model
        self.accelerator = accelerator
        self.engine = _deepspeed_engine(model)
        self.offloads = self.engine is not None and bool(self.engine.zero_use_cpu_optimizer())

    def sync_context(self, last: bool) -> contextlib.AbstractContextManager:
        """Context for a chunk's forward + backward: no gradient sync unless it is the last one."""
        if last or self.engine is not None:  # DeepSpeed: the accumulation boundary does this job
            return contextlib.nullcontext()
        if isinstance(self.model, FSDPModule):  # FSDP2 (whatever built the Accelerator): its own switch
            return _fsdp2_sync_off(self.model)
        if self.accelerator is not None:
            return self.accelerator.no_sync(self.model)
        no_sync = getattr(self.model, "no_sync", None)
        return no_sync() if no_sync is not None else contextlib.nullcontext()

    def __call__(self, loss: torch.Tensor, last: bool) -> None:
        if self.engine is not None and not last:
            self.engine.set_gradient_accumulation_boundary(False)
            self.engine.backward(loss)
        elif self.accelerator is not None:
            # with DeepSpeed, accelerate sets the boundary from sync_gradients and runs engine.step()
            self.accelerator.backward(loss)
        elif self.engine is not None:
            self.engine.set_gradient_accumulation_boundary(True)
            self.engine.backward(loss)
        else:
            loss.backward()


@contextlib.contextmanager
def _fsdp2_sync_off(model: FSDPModule) -> Iterator[None]:
    """FSDP2: no reduce-scatter in the backwards inside the block (gradients accumulate unsharded);
    the next backward outside it reduces them all."""
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


class _Chunk:
    """One chunk of one side and what the two passes keep about it: its rows, not its inputs (a
    chunk's sub-batch is cut when a pass needs it and dropped after, so a step never holds a second
    copy of the batch's inputs)."""

    def __init__(self, side: str, index: int) -> None:
        self.side, self.index = side, index
        self.rng: RngState | None = None
        self.modules: set[int] = set()
        self.reps: torch.Tensor | None = None
        self.grad: torch.Tensor | None = None


def _trainable_modules(model: nn.Module) -> set[int]:
    """ids of the modules that own a trainable parameter directly."""
    return {id(m) for m in model.modules() if any(p.requires_grad for p in m.parameters(recurse=False))}


@contextlib.contextmanager
def _record_modules(owners: set[int]) -> Iterator[set[int]]:
    """Collect the ids of the `owners` modules that run inside the block."""
    used: set[int] = set()

    def hook(module: nn.Module, args: Any) -> None:
        if id(module) in owners:
            used.add(id(module))

    handle = nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield used
    finally:
        handle.remove()


def _replay_order(chunks: list[_Chunk], backward: _Backward) -> list[_Chunk]:
    """Chunks in their natural order, except that the last one runs every module any chunk ran.

    The last backward synchronises gradients. DDP without `find_unused_parameters` needs every
    parameter to take part in it, and DeepSpeed ZeRO-Offload (0.19) only finalises offloaded gradients
    of parameters used in the boundary backward (the others are silently dropped). A text-only last
    chunk after chunks with images would hit both, so a chunk that covers all modules is moved last.
    """
    used = set().union(*(c.modules for c in chunks))
    covering = [i for i, c in enumerate(chunks) if c.modules == used]
    if covering:
        pick = covering[-1]
    else:
        if backward.offloads:
            raise RuntimeError(
                "GradCache under DeepSpeed ZeRO-Offload needs one chunk that runs every trainable module "
                "(e.g. a chunk with both text and images); none does in this batch. Use a larger chunk "
                "size, a config without offload, or freeze the modules that only some chunks use."
            )
        pick = max(range(len(chunks)), key=lambda i: (len(chunks[i].modules), i))
    return chunks[:pick] + chunks[pick + 1 :] + [chunks[pick]]


def _encode(model: nn.Module, side: str, inputs: Batch) -> torch.Tensor:
    """Reps of one side through the (possibly engine-wrapped) model; negatives are encoded as targets."""
    key = "qry" if side == "qry" else "tgt"
    return model(**{key: inputs})[f"{key}_reps"]


class GradCache:
    """The training step: plain or chunked two-pass (GradCache), for one process, DDP and DeepSpeed.

    Args:
        loss_fn: `loss_fn(qry_reps, tgt_reps, neg_reps, **loss_kwargs) -> scalar` over local reps (it
            gathers across ranks itself), e.g. `vlm2vec.losses.ContrastiveLoss`.
        qry_chunk_size: rows per chunk on the query side; None = no row limit.
        tgt_chunk_size: rows per chunk on the target side (and for hard negatives); None = no row limit.
        accelerator: an `accelerate.Accelerator` when the model was prepared by one; its `backward`
            and `no_sync` are then used.
        split_fn: `split_fn(inputs, plan) -> list[batch]` with `plan` the row indices of each chunk;
            default `split_batch` (dim-0 indexing). Backbone models pass `EmbeddingModel.split_batch`.
        qry_chunk_tokens / tgt_chunk_tokens: token budget of a chunk (rows x its longest row, i.e. the
            padded tokens it costs); None = no budget. With both a row count and a budget, both hold.
        group_by_length: sort a side's rows by length before chunking (reps are put back in order).

    Every chunk is trimmed to its own longest row. Ranks run the same number of chunk passes: with
    several processes the per-side chunk counts are agreed (max) with one all_reduce per step and the
    smaller plans split further (`chunking.equalize`).

    Costs: with chunking, one extra no-grad forward per step (about 4/3 of the compute of plain
    training) and activation memory of one chunk; the reps of the whole batch and their gradients are
    kept (N x H floats per side).
    """

    def __init__(
        self,
        loss_fn: Callable[..., torch.Tensor],
        qry_chunk_size: int | None = None,
        tgt_chunk_size: int | None = None,
        accelerator: Any | None = None,
        split_fn: SplitFn | None = None,
        qry_chunk_tokens: int | None = None,
        tgt_chunk_tokens: int | None = None,
        group_by_length: bool = True,
    ) -> None:
        for name, size in (
            ("qry_chunk_size", qry_chunk_size),
            ("tgt_chunk_size", tgt_chunk_size),
            ("qry_chunk_tokens", qry_chunk_tokens),
            ("tgt_chunk_tokens", tgt_chunk_tokens),
        ):
            if size is not None and size < 1:
                raise ValueError(f"{name} must be a positive integer or None, got {size}")
        self.loss_fn = loss_fn
        self.chunk_sizes = {"qry": qry_chunk_size, "tgt": tgt_chunk_size, "neg": tgt_chunk_size}
        self.chunk_tokens = {"qry": qry_chunk_tokens, "tgt": tgt_chunk_tokens, "neg": tgt_chunk_tokens}
        self.group_by_length = group_by_length
        self.accelerator = accelerator
        self.split_fn = split_fn or split_batch
        #: (real tokens, padded tokens) of the last step's chunks, one forward pass, this rank
        self.last_padding: tuple[int, int] = (0, 0)

    def plan(self, qry: Batch, tgt: Batch, neg: Batch | None = None) -> dict[str, Plan]:
        """Row indices of each chunk per side; every side one chunk when no side needs cutting.

        With several processes the counts are agreed (max over ranks, one all_reduce): token budgets,
        or a last batch with fewer rows, could otherwise make ranks run different numbers of passes.
        """
        sides = {"qry": qry, "tgt": tgt, "neg": neg}
        lengths = {s: row_lengths(x) for s, x in sides.items() if x is not None}
        plans = {
            s: plan_chunks(n, self.chunk_sizes[s], self.chunk_tokens[s], self.group_by_length)
            for s, n in lengths.items()
        }
        counts = {s: len(p) for s, p in plans.items()}
        limits = [*self.chunk_sizes.values(), *self.chunk_tokens.values()]
        if any(v is not None for v in limits) and world()[1] > 1:
            device = next(v.device for v in qry.values() if isinstance(v, torch.Tensor))
            agreed = torch.tensor([counts.get(s, 0) for s in SIDES], device=device)
            dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
            counts = {s: int(agreed[i]) for i, s in enumerate(SIDES) if s in plans}
        if all(c == 1 for c in counts.values()):
            return {s: [list(range(len(n)))] for s, n in lengths.items()}
        plans = {s: equalize(plans[s], counts[s], lengths[s]) for s in plans}
        return {s: p if len(p) > 1 else [list(range(len(lengths[s])))] for s, p in plans.items()}

    def step(
        self, model: nn.Module, qry: Batch, tgt: Batch, neg: Batch | None = None, **loss_kwargs: Any
    ) -> torch.Tensor:
        """Forward, loss and backward for one batch; returns the detached loss.

        Gradients are accumulated into the parameters (and synchronised across ranks); the caller then
        clips and steps the optimizer. Under accelerate + DeepSpeed, accelerate's backward already runs
        the engine step (the prepared optimizer's `step` is then a no-op), as in any accelerate loop.
        Hard negatives (`neg`, k rows per query) are encoded as targets; `loss_kwargs` (e.g. the content
        keys of `ContrastiveLoss`) go to `loss_fn`. In the plain path the model is called once,
        `model(qry=..., tgt=..., neg=...)`, so DDP sees one forward per backward.
        """
        backward = _Backward(model, self.accelerator)
        plans = self.plan(qry, tgt, neg)
        if all(len(p) == 1 for p in plans.values()):
            self.last_padding = padding_counts([qry, tgt, neg])
            sides = {"qry": qry, "tgt": tgt} | ({"neg": neg} if neg is not None else {})
            out = model(**sides)
            loss = self.loss_fn(out["qry_reps"], out["tgt_reps"], out.get("neg_reps"), **loss_kwargs)
            backward(loss, last=True)
            return loss.detach()

        inputs_of = {"qry": qry, "tgt": tgt, "neg": neg}
        chunks = [_Chunk(side, n) for side, plan in plans.items() for n in range(len(plan))]
        sides = list(plans)

        def inputs(chunk: _Chunk) -> Batch:
            return self._chunk_inputs(inputs_of[chunk.side], plans[chunk.side], chunk.index)

        # 1. no-grad forward of every chunk, remembering the RNG state it started from and the modules
        #    with trainable parameters it ran
        owners = _trainable_modules(model)
        counts = []
        with torch.no_grad():
            for chunk in chunks:
                part = inputs(chunk)
                chunk.rng = RngState(part)
                counts.append(padding_counts([part]))
                with _record_modules(owners) as chunk.modules:
                    chunk.reps = _encode(model, chunk.side, part)
                del part
        self.last_padding = (sum(c[0] for c in counts), sum(c[1] for c in counts))
        # reps in chunk order (the leaves), and in the batch's row order for the loss
        leaves = {s: torch.cat([c.reps for c in chunks if c.side == s]).requires_grad_(True) for s in sides}
        reps = {}
        for side in sides:
            order = torch.tensor([r for rows in plans[side] for r in rows], device=leaves[side].device)
            reps[side] = leaves[side][torch.argsort(order)]

        # 2. loss on the full reps, gradient with respect to the reps only
        with torch.enable_grad():
            loss = self.loss_fn(reps["qry"], reps["tgt"], reps.get("neg"), **loss_kwargs)
        grads = dict(zip(sides, torch.autograd.grad(loss, list(leaves.values()))))
        for side in sides:
            side_chunks = [c for c in chunks if c.side == side]
            for chunk, grad in zip(side_chunks, grads[side].split([len(c.reps) for c in side_chunks])):
                chunk.grad, chunk.reps = grad, None

        # 3. replay each chunk with autograd and push its cached gradient into the parameters; the
        #    gradient-synchronising backward comes last and covers every module used in the step
        order = _replay_order(chunks, backward)
        for n, chunk in enumerate(order):
            last = n == len(order) - 1
            with backward.sync_context(last):
                with chunk.rng.replay():
                    chunk_reps = _encode(model, chunk.side, inputs(chunk))
                backward(torch.sum(chunk_reps.float() * chunk.grad), last=last)
            chunk.grad = chunk_reps = None
        return loss.detach()

    def _chunk_inputs(self, inputs: Batch, plan: Plan, index: int) -> Batch:
        """The sub-batch of chunk `index` of a side's plan (the batch itself when it is one chunk)."""
        if len(plan) == 1 and plan[0] == list(range(num_rows(inputs))):
            return inputs
        return self.split_fn(inputs, [plan[index]])[0]
