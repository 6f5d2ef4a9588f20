"""Opening released checkpoint files exactly: tensor files, old key names, PEFT adapters.

VLM2Vec's released adapters and merged shards were written by transformers 4.4x, whose module names
differ from transformers 5 for some classes (Qwen2-VL: ``model.layers.*`` became
``model.language_model.layers.*``, ``visual.*`` became ``model.visual.*``). transformers registers those
renamings per class (`transformers.conversion_mapping`) and applies them when it loads full weights;
peft 0.21 looks them up only by ``model_type`` and so misses Qwen2-VL's, leaving the adapter unapplied
with a warning. Here the same registered rules are applied to adapter keys before peft sees them, and
every tensor must land on a parameter and every adapted module must get its weights, or loading
fails with a `ModelLoadError` naming the keys.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ModelLoadError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
#: files that make a folder hold full weights (besides its config.json)
FULL_WEIGHT_PATTERNS = ("model*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")
PEFT_PREFIX = "base_model.model."
#: how many keys an error message lists before "..."
SHOWN_KEYS = 8


def _keys(keys: list[str]) -> str:
    keys = sorted(keys)
    more = f" ... ({len(keys)} in all)" if len(keys) > SHOWN_KEYS else ""
    return ", ".join(keys[:SHOWN_KEYS]) + more


def check_safetensors(file: str | os.PathLike) -> None:
    """`ModelLoadError` naming `file` unless its header is readable and the tensors it lists end exactly
    where the file ends (a truncated copy or an interrupted download fails here, in one line)."""
    file = Path(file)
    size = file.stat().st_size
    redo = "copy or download it again"
    with file.open("rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length < 2 or 8 + length > size:
            raise ModelLoadError(f"{file}: truncated or broken safetensors header ({size} bytes); {redo}")
        try:
            header = json.loads(f.read(length))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise ModelLoadError(f"{file}: broken safetensors header (not a tensor table); {redo}") from None
    if 8 + length + end != size:
        raise ModelLoadError(
            f"{file}: truncated safetensors file: its header lists {8 + length + end} bytes, the file holds "
            f"{size}; {redo}"
        )


def check_weight_files(folder: str | os.PathLike) -> None:
    """`check_safetensors` for every safetensors file of a model folder."""
    for file in sorted(Path(folder).glob("*.safetensors")):
        check_safetensors(file)


def read_tensors(file: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A tensor file on the CPU: safetensors, or a torch pickle read with ``weights_only=True`` (tensors
    only, no code runs)."""
    file = Path(file)
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        check_safetensors(file)

        return load_file(str(file))
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickling error names no file; this one does
        raise ModelLoadError(f"{file}: not a tensor file readable with weights_only=True ({exc})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{file}: expected a dict of tensors")
    return state


# ------------------------------------------------------------------------------------ folder kinds


def adapter_file(folder: str | os.PathLike) -> Path | None:
    """The adapter weights file of a PEFT adapter folder (safetensors preferred, as peft does)."""
    for name in ADAPTER_FILES:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def has_adapter(folder: str | os.PathLike) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def has_full_weights(folder: str | os.PathLike) -> bool:
    """config.json plus model weights (safetensors or ``pytorch_model*.bin`` shards)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        return False
    return any(any(folder.glob(p)) for p in FULL_WEIGHT_PATTERNS)


def adapter_base(folder: str | os.PathLike) -> str | None:
    """The base model an adapter was trained on (``base_model_name_or_path``), as recorded."""
    return json.loads((Path(folder) / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")


@contextlib.contextmanager
def without_adapter_files(folder: str | os.PathLike) -> Iterator[Path]:
    """The folder as transformers should see it to load its full weights: without the adapter files.

    transformers' `from_pretrained` loads any adapter it finds beside the weights (and looks for the
    adapter's base); a root that holds both is opened as full weights through a temporary folder of
    links to everything else.
    """
    folder = Path(folder)
    if not has_adapter(folder):
        yield folder
        return
    view = Path(tempfile.mkdtemp(prefix=f".{folder.name}.weights."))
    try:
        for item in folder.iterdir():
            if item.name != ADAPTER_CONFIG and item.name not in ADAPTER_FILES:
                (view / item.name).symlink_to(item.resolve())
        yield view
    finally:
        shutil.rmtree(view, ignore_errors=True)


def check_loading_info(info: dict[str, Any], path: str | os.PathLike) -> None:
    """Raise on the missing / unexpected / mismatched keys transformers reports for a full-weights load."""
    missing = list(info.get("missing_keys", ()))
    unexpected = list(info.get("unexpected_keys", ()))
    mismatched = [str(k) for k in info.get("mismatched_keys", ())]
    problems = []
    if unexpected:
        problems.append(f"tensors that land on no parameter: {_keys(unexpected)}")
    if missing:
        problems.append(f"parameters the files do not hold: {_keys(missing)}")
    if mismatched:
        problems.append(f"tensors of the wrong shape: {_keys(mismatched)}")
    if problems:
        raise ModelLoadError(f"{path}: weights do not match the model; " + "; ".join(problems))


def from_pretrained_strict(model_class: Any, path: str | os.PathLike, **kwargs: Any) -> nn.Module:
    """transformers' own `from_pretrained` of a full-weights folder (safetensors or ``pytorch_model-*.bin``
    shards, read with ``weights_only``; old 4.4x key names renamed by its registered rules), with an
    adapter beside the weights hidden (see `without_adapter_files`) and any key that does not match the
    model an error naming it (transformers itself only warns)."""
    import pickle

    check_weight_files(path)
    with without_adapter_files(path) as weights:
        try:
            model, info = model_class.from_pretrained(
                str(weights), weights_only=True, output_loading_info=True, **kwargs
            )
        except pickle.UnpicklingError as exc:
            raise ModelLoadError(f"{path}: a .bin file holds more than tensors ({exc})") from exc
        except RuntimeError as exc:  # torch's reader of a truncated .bin archive
            if "PytorchStreamReader" not in str(exc):
                raise
            raise ModelLoadError(f"{path}: a truncated or broken .bin weight file ({exc})") from None
    check_loading_info(info, path)
    return model


# ----------------------------------------------------------------------------------- key renaming


def key_renamer(model: nn.Module) -> Callable[[str], str]:
    """Old checkpoint key -> this module tree's key, by the renamings transformers registers for the
    model's classes (`get_model_conversion_mapping`, the rules its own `from_pretrained` applies).

    Only pure renamings are applied: a registered converter (one that reshapes tensors, e.g. fusing MoE
    experts) cannot be applied to adapter factors, so a key it matches is an error.
    """
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, rename_source_key

    if not hasattr(getattr(model, "config", None), "model_type"):
        return lambda key: key
    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if not isinstance(t, WeightConverter)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]

    def rename(key: str) -> str:
        new, converter = rename_source_key(key, renamings, converters)
        if converter is not None:
            raise ModelLoadError(
                f"checkpoint key {key!r} needs a tensor conversion ({converter}), not only a renaming"
            )
        return new

    return rename


# --------------------------------------------------------------------------------------- adapters


def load_adapter(model: nn.Module, folder: str | os.PathLike, trainable: bool = False) -> nn.Module:
    """Wrap `model` in the PEFT adapter saved in `folder` (LoRA or DoRA), with old key names mapped.

    Every tensor of the adapter file must land on an adapter parameter and every adapter parameter
    peft creates (one per targeted module) must come from the file; otherwise `ModelLoadError` names
    the keys. The adapter is frozen unless ``trainable``.
    """
    from peft import PeftConfig, PeftModel, set_peft_model_state_dict

    folder = Path(folder)
    file = adapter_file(folder)
    if file is None:
        raise ModelLoadError(f"{folder}: adapter_config.json but no {' or '.join(ADAPTER_FILES)}")
    config = PeftConfig.from_pretrained(str(folder))
    config.inference_mode = not trainable
    rename = key_renamer(model)
    state, origin = {}, {}
    for key, tensor in read_tensors(file).items():
        inner = key.removeprefix(PEFT_PREFIX)
        new = PEFT_PREFIX + rename(inner) if key.startswith(PEFT_PREFIX) else key
        state[new] = tensor
        origin[new] = key
    peft_model = PeftModel(model, config)
    expected = set(_adapter_keys(peft_model))
    if not expected:
        raise ModelLoadError(
            f"{folder / ADAPTER_CONFIG}: target_modules {config.target_modules!r} match no module of the model"
        )
    try:
        result = set_peft_model_state_dict(peft_model, state)
    except RuntimeError as exc:  # torch's "size mismatch for ...": an adapter of another base's shapes
        problem = " ".join(str(exc).split())
        base = getattr(getattr(model, "config", None), "_name_or_path", "") or "this base"
        raise ModelLoadError(
            f"{file}: adapter does not fit the base model {base} ({problem[:300]})"
        ) from None
    unexpected = [
        f"{origin.get(k, k)}" + (f" (as {k})" if origin.get(k, k) != k else "")
        for k in result.unexpected_keys
    ]
    missing = [k for k in result.missing_keys if k in expected]
    problems = []
    if unexpected:
        problems.append(f"tensors that land on no adapter parameter: {_keys(unexpected)}")
    if missing:
        problems.append(f"adapter parameters the file does not hold: {_keys(missing)}")
    if problems:
        raise ModelLoadError(f"{file}: adapter does not match the model; " + "; ".join(problems))
    if not trainable:
        for param in peft_model.parameters():
            param.requires_grad_(False)
    return peft_model


def _adapter_keys(peft_model: nn.Module) -> list[str]:
    """State-dict keys of the adapter parameters peft injected (LoRA factors, DoRA magnitudes, ...)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    keys = []
    for name, module in peft_model.named_modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        for pname, _ in module.named_parameters():
            if not pname.startswith("base_layer."):
                keys.append(f"{name}.{pname}")
    return keys


__all__ = [
    "ADAPTER_CONFIG",
    "adapter_base",
    "adapter_file",
    "check_loading_info",
    "check_safetensors",
    "check_weight_files",
    "from_pretrained_strict",
    "has_adapter",
    "has_full_weights",
    "key_renamer",
    "load_adapter",
    "read_tensors",
    "without_adapter_files",
]
