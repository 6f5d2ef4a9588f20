"""GradCache: contrastive training with a large batch in the activation memory of one chunk.

The contrastive loss couples every query with every target, so the batch cannot simply be split into
gradient-accumulation micro-batches. GradCache (Gao et al., 2021) splits the gradient instead:

1. forward every chunk without autograd, keep its reps and the RNG state it started from;
2. compute the loss on the full (gathered) reps and back-propagate to the reps only;
3. per chunk, forward again under the saved RNG state (same dropout masks) and back-propagate
   `sum(reps * d loss / d reps)`; the parameter gradients add up to the full-batch gradient.

One code path serves every engine. The only engine-specific part is how a chunk's backward is issued
(`_Backward`): under DDP all but the last backward run in `no_sync` so gradients are all-reduced once;
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
from torch import nn

Batch = dict[str, Any]
SplitFn = Callable[[Batch, int], list[Batch]]


def batch_rows(inputs: Batch) -> int:
    """Number of rows (examples) of a processed batch: the length of `input_ids` (or `attention_mask`)."""
    for key in ("input_ids", "attention_mask"):
        if isinstance(inputs.get(key), torch.Tensor):
            return int(inputs[key].shape[0])
    for value in inputs.values():
        if isinstance(value, torch.Tensor):
            return int(value.shape[0])
    raise ValueError(f"cannot tell the batch size of a batch with keys {sorted(inputs)}")


def split_batch(inputs: Batch, chunk_size: int) -> list[Batch]:
    """Default splitter: slice every tensor (and list) on dim 0 into chunks of `chunk_size` rows.

    Correct when every tensor has one row per example. Backbones whose pixel tensors are not per row
    (Qwen2-VL's flattened patches with `image_grid_thw` per image) must pass their own `split_fn`.
    """
    rows = batch_rows(inputs)
    chunks = []
    for start in range(0, rows, chunk_size):
        chunk = {}
        for key, value in inputs.items():
            if isinstance(value, (torch.Tensor, list, tuple)):
                if len(value) != rows:
                    raise ValueError(
                        f"'{key}' has {len(value)} rows but the batch has {rows}: "
                        "pass a split_fn that knows this backbone's layout"
                    )
                chunk[key] = value[start : start + chunk_size]
            else:
                chunk[key] = value
        chunks.append(chunk)
    return chunks


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


class _Chunk:
    """One chunk of one side and what the two passes keep about it."""

    def __init__(self, side: str, inputs: Batch) -> None:
        self.side, self.inputs = side, inputs
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
        qry_chunk_size: rows per chunk on the query side; None = no chunking.
        tgt_chunk_size: rows per chunk on the target side (and for hard negatives); None = no chunking.
        accelerator: an `accelerate.Accelerator` when the model was prepared by one; its `backward`
            and `no_sync` are then used.
        split_fn: `split_fn(inputs, chunk_size) -> list[batch]`; default `split_batch` (dim-0 slicing).

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
    ) -> None:
        for name, size in (("qry_chunk_size", qry_chunk_size), ("tgt_chunk_size", tgt_chunk_size)):
            if size is not None and size < 1:
                raise ValueError(f"{name} must be a positive integer or None, got {size}")
        self.loss_fn = loss_fn
        self.chunk_sizes = {"qry": qry_chunk_size, "tgt": tgt_chunk_size, "neg": tgt_chunk_size}
        self.accelerator = accelerator
        self.split_fn = split_fn or split_batch

    def needs_chunking(self, qry: Batch, tgt: Batch, neg: Batch | None = None) -> bool:
        """True when some side is larger than its chunk size (the two-pass path runs)."""
        sides = {"qry": qry, "tgt": tgt, "neg": neg}
        return any(
            inputs is not None
            and self.chunk_sizes[side] is not None
            and batch_rows(inputs) > self.chunk_sizes[side]
            for side, inputs in sides.items()
        )

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
        if not self.needs_chunking(qry, tgt, neg):
            sides = {"qry": qry, "tgt": tgt} | ({"neg": neg} if neg is not None else {})
            out = model(**sides)
            loss = self.loss_fn(out["qry_reps"], out["tgt_reps"], out.get("neg_reps"), **loss_kwargs)
            backward(loss, last=True)
            return loss.detach()

        chunks = [
            _Chunk(side, part)
            for side, inputs in (("qry", qry), ("tgt", tgt), ("neg", neg))
            if inputs is not None
            for part in self._split(side, inputs)
        ]
        sides = list(dict.fromkeys(c.side for c in chunks))

        # 1. no-grad forward of every chunk, remembering the RNG state it started from and the modules
        #    with trainable parameters it ran
        owners = _trainable_modules(model)
        with torch.no_grad():
            for chunk in chunks:
                chunk.rng = RngState(chunk.inputs)
                with _record_modules(owners) as chunk.modules:
                    chunk.reps = _encode(model, chunk.side, chunk.inputs)
        reps = {s: torch.cat([c.reps for c in chunks if c.side == s]).requires_grad_(True) for s in sides}

        # 2. loss on the full reps, gradient with respect to the reps only
        with torch.enable_grad():
            loss = self.loss_fn(reps["qry"], reps["tgt"], reps.get("neg"), **loss_kwargs)
        grads = dict(zip(sides, torch.autograd.grad(loss, list(reps.values()))))
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
                    chunk_reps = _encode(model, chunk.side, chunk.inputs)
                backward(torch.sum(chunk_reps.float() * chunk.grad), last=last)
        return loss.detach()

    def _split(self, side: str, inputs: Batch) -> list[Batch]:
        size = self.chunk_sizes[side]
        if size is None or batch_rows(inputs) <= size:
            return [inputs]
        return self.split_fn(inputs, size)
