"""The FSDP2 engine: shard an `EmbeddingModel` with torch's `fully_shard`, block by block, for GradCache.

We apply `fully_shard` ourselves rather than through accelerate's FSDP2 plugin: accelerate 1.16 only
turns FSDP on for accelerator devices (CUDA, NPU, XPU, ...); under `cpu=True` it silently wraps the
model in DDP, and without it a CPU launch is a single process. Applying it here is one code path for
GPUs and for the CPU (gloo) tests. Every transformer block (the classes the backbone's transformers
models list in `_no_split_modules`: decoder layers and vision blocks) becomes one FSDP unit and the
whole model the root unit, so a step holds one block's full parameters at a time. The model keeps its
class and is called through `forward` (`model(qry=...)`), so FSDP2's hooks run for every encode; the
backbones' lockstep rule (every rank calls the same modules, the vision tower included, on every
forward) keeps the ranks' all-gathers in step. Mixed precision: `train.mixed_precision: bf16` computes
in bf16 parameters and reduces gradients in fp32; the sharded parameters and Adam states stay fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard


def block_classes(model: nn.Module) -> set[str]:
    """Names of the transformer-block classes inside `model` (from transformers' `_no_split_modules`)."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    return names


def mixed_precision_policy(mixed_precision: str) -> MixedPrecisionPolicy:
    """bf16 compute with fp32 gradient reduction for `bf16`; fp32 throughout for `no`."""
    if mixed_precision == "bf16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def shard_model(model: nn.Module, mixed_precision: str = "no") -> nn.Module:
    """Shard `model` in place over the default process group (its blocks, then the root); returns it."""
    policy = mixed_precision_policy(mixed_precision)
    blocks = block_classes(model)
    for module in list(model.modules()):
        if module is not model and type(module).__name__ in blocks:
            fully_shard(module, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def full_parameters(model: nn.Module, keep: bool) -> Iterator[None]:
    """Collective: inside the block, on the ranks with `keep`, every parameter of `model` is its full,
    unsharded tensor (on the CPU), so `save_pretrained` writes the whole model in its usual layout.

    Each sharded parameter is all-gathered in turn (one full tensor at a time on the other ranks) and set
    in its module's place; the sharded ones are put back afterwards. FSDP2's state-dict hook only
    reshards modules it has unsharded itself, so it leaves these full tensors alone.
    """
    swapped: list[tuple[nn.Module, str, nn.Parameter]] = []
    gathered: dict[int, nn.Parameter] = {}  # one full copy per parameter, whatever module shares it
    for name, param in list(model.named_parameters(remove_duplicate=False)):
        if id(param) not in gathered:
            full = param.full_tensor().detach()  # collective: every rank gathers, in the same order
            gathered[id(param)] = (
                nn.Parameter(full.cpu(), requires_grad=param.requires_grad) if keep else param
            )
        if keep:
            owner_name, _, leaf = name.rpartition(".")
            owner = model.get_submodule(owner_name)
            swapped.append((owner, leaf, param))
            owner._parameters[leaf] = gathered[id(param)]
    try:
        yield
    finally:
        for owner, leaf, param in swapped:
            owner._parameters[leaf] = param
