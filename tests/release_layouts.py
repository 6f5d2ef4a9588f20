"""Tiny checkpoints in the file layouts of TIGER-Lab's VLM2Vec releases (REFERENCE §8), for tests.

The released weights cannot be downloaded here, so each layout is rebuilt around a tiny base folder
(`vlm2vec.testing.make_tiny_checkpoint`) with random adapter weights:

- VLM2Vec-Full: a Phi-3.5-V folder in the official layout (`make_tiny_checkpoint("phi3_v", ...)`).
- VLM2Vec-LoRA: `adapter_model.bin`, a torch pickle of **bf16** tensors, DoRA (r 8, alpha 64, dropout
  0.1, gaussian init) on the language model's qkv/o/gate_up/down and the CLIP tower's q/k/v/out.
- VLM2Vec-Qwen2VL-2B: fp32 `adapter_model.bin` with transformers 4.4x key names
  (`base_model.model.model.layers.*`, `...visual.*`) plus tokenizer and processor files.
- VLM2Vec-Qwen2VL-7B: the same adapter *and* merged weights in the same root, as four bf16
  `pytorch_model-0000k-of-00004.bin` shards with old key names and their index.

The adapters record the hub name of their base (``base_model_name_or_path``), as the releases do, so
opening one needs ``path=`` pointing at the local base.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlm2vec.config import ModelConfig

PHI35V_BASE = "microsoft/Phi-3.5-vision-instruct"
QWEN2VL_2B_BASE = "Qwen/Qwen2-VL-2B-Instruct"
QWEN2VL_7B_BASE = "Qwen/Qwen2-VL-7B-Instruct"
#: VLM2Vec-LoRA's adapter_config.json targets: the first four hit the LM, the last four the CLIP tower
PHI35V_TARGETS = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj", "q_proj", "k_proj", "v_proj", "out_proj"]
#: the reference v1 defaults the Qwen2-VL adapter sizes fit (LM attention + down_proj)
QWEN2VL_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]
PROCESSOR_FILES = ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json")
PEFT_PREFIX = "base_model.model."


def qwen2vl_old_key(key: str) -> str:
    """transformers 5 Qwen2-VL key -> the transformers 4.4x name the releases were saved with."""
    if key.startswith("model.language_model."):
        return "model." + key.removeprefix("model.language_model.")
    if key.startswith("model.visual."):
        return key.removeprefix("model.")
    return key


def _load_base(backbone: str, base: Path) -> nn.Module:
    from vlm2vec.backbones import get_backbone

    return get_backbone(backbone).load_model(str(base), ModelConfig(backbone=backbone, path=str(base)))


def _random_adapter(model: nn.Module, targets: list[str], use_dora: bool, seed: int) -> nn.Module:
    """peft's own adapter on `model`, every factor random (B is zero at init) and DoRA magnitudes moved
    off ||W|| so that the magnitude normalisation matters."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=8,
        lora_alpha=64,
        lora_dropout=0.1,
        target_modules=targets,
        use_dora=use_dora,
        init_lora_weights="gaussian",
    )
    peft_model = get_peft_model(model, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.copy_(0.05 * torch.randn(param.shape, generator=gen))
            elif "lora_magnitude_vector" in name:
                param.mul_(1.0 + 0.2 * torch.rand(param.shape, generator=gen))
    return peft_model


def _write_adapter(
    peft_model: nn.Module, folder: Path, base_name: str, dtype: torch.dtype, rename: Any = None
) -> None:
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(peft_model)
    if rename is not None:
        state = {PEFT_PREFIX + rename(k.removeprefix(PEFT_PREFIX)): v for k, v in state.items()}
    torch.save({k: v.detach().to(dtype).contiguous() for k, v in state.items()}, folder / "adapter_model.bin")
    peft_model.peft_config["default"].save_pretrained(str(folder))
    cfg_file = folder / "adapter_config.json"
    data = json.loads(cfg_file.read_text())
    data["base_model_name_or_path"] = base_name
    data["target_modules"] = sorted(data["target_modules"])
    cfg_file.write_text(json.dumps(data, indent=2) + "\n")


def _copy_processor_files(base: Path, folder: Path) -> None:
    for name in PROCESSOR_FILES:
        if (base / name).is_file():
            shutil.copy(base / name, folder / name)


def write_vlm2vec_lora(folder: str | Path, base: str | Path, seed: int = 0) -> Path:
    """VLM2Vec-LoRA's layout over a tiny Phi-3.5-V base: bf16 DoRA `adapter_model.bin`, CLIP + LM targets."""
    folder, base = Path(folder), Path(base)
    folder.mkdir(parents=True, exist_ok=True)
    peft_model = _random_adapter(_load_base("phi3_v", base), PHI35V_TARGETS, use_dora=True, seed=seed)
    _write_adapter(peft_model, folder, PHI35V_BASE, torch.bfloat16)
    return folder


def write_vlm2vec_qwen2vl(
    folder: str | Path, base: str | Path, *, merged_shards: bool = False, seed: int = 0
) -> Path:
    """VLM2Vec-Qwen2VL-2B's layout (fp32 adapter with old key names + processor files) over a tiny
    Qwen2-VL base; with ``merged_shards`` the -7B root: also the merged model as four bf16
    ``pytorch_model-*.bin`` shards with old key names, their index and config.json."""
    folder, base = Path(folder), Path(base)
    folder.mkdir(parents=True, exist_ok=True)
    peft_model = _random_adapter(_load_base("qwen2_vl", base), QWEN2VL_TARGETS, use_dora=True, seed=seed)
    base_name = QWEN2VL_7B_BASE if merged_shards else QWEN2VL_2B_BASE
    _write_adapter(peft_model, folder, base_name, torch.float32, rename=qwen2vl_old_key)
    _copy_processor_files(base, folder)
    if merged_shards:
        merged = copy.deepcopy(peft_model).merge_and_unload()
        state = {
            qwen2vl_old_key(k): v.detach().to(torch.bfloat16).contiguous()
            for k, v in merged.state_dict().items()
        }
        write_bin_shards(state, folder, num_shards=4)
        config = json.loads((base / "config.json").read_text())
        config["dtype"] = "bfloat16"
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def write_bin_shards(state: dict[str, torch.Tensor], folder: Path, num_shards: int) -> list[Path]:
    """``pytorch_model-0000k-of-0000n.bin`` torch pickles plus ``pytorch_model.bin.index.json``."""
    keys = list(state)
    per = -(-len(keys) // num_shards)
    names, weight_map = [], {}
    for i in range(num_shards):
        name = f"pytorch_model-{i + 1:05d}-of-{num_shards:05d}.bin"
        part = {k: state[k] for k in keys[i * per : (i + 1) * per]}
        torch.save(part, folder / name)
        weight_map.update({k: name for k in part})
        names.append(folder / name)
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return names


__all__ = [
    "PHI35V_BASE",
    "PHI35V_TARGETS",
    "QWEN2VL_2B_BASE",
    "QWEN2VL_7B_BASE",
    "QWEN2VL_TARGETS",
    "qwen2vl_old_key",
    "write_bin_shards",
    "write_vlm2vec_lora",
    "write_vlm2vec_qwen2vl",
]
