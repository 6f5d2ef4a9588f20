"""Which model folder `vlm2vec export MODEL` means, and opening it at the precision asked for.

MODEL may be a training run (`train.output_dir`: its `final/` is exported, and its `config.yaml` goes
into the model card), a folder written by `save_pretrained` (full, merged or adapter), a released PEFT
adapter, or a model in its official layout. Opening goes through `EmbeddingModel.from_pretrained`, the
one loader; an adapter whose base is not a local folder is refused before anything is read.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ModelNotFoundError
from ..weight_files import adapter_base, has_adapter
from .support import ExportError

META_FILE = "vlm2vec.json"  # = vlm2vec.model.META_FILE
RUN_CONFIG = "config.yaml"  # what a training run records (training/resume.py)


def model_folder(model: str | Path) -> tuple[Path, Path | None]:
    """The model folder MODEL names, and the training run it belongs to (None if not a run's model)."""
    model = Path(model)
    if not model.is_dir():
        raise ModelNotFoundError(f"MODEL {model}: not a folder")
    if (model / "final").is_dir() and (model / RUN_CONFIG).is_file():
        return model / "final", model
    if any((model / name).is_file() for name in (META_FILE, "config.json", "adapter_config.json")):
        run = model.parent if (model.parent / RUN_CONFIG).is_file() else None
        return model, run
    raise ExportError(
        f"MODEL {model}: neither a training run (final/ beside config.yaml) nor a model folder "
        f"(no {META_FILE}, config.json or adapter_config.json)"
    )


def recorded_base(folder: Path) -> str | None:
    """The base model an adapter folder names (ours in vlm2vec.json, a released one in its PEFT config);
    None when the folder holds full weights."""
    meta = folder / META_FILE
    if meta.is_file():
        saved = json.loads(meta.read_text())
        return saved["model"].get("path") if saved.get("kind") == "adapter" else None
    return adapter_base(folder) if has_adapter(folder) else None


def open_model(folder: Path, dtype: str, base: str | None = None):
    """The EmbeddingModel in `folder` with weights in `dtype` (an adapter over `base`, or over the base
    it records); `ExportError` naming --base when that base is not a local folder."""
    from ..model import EmbeddingModel

    recorded = recorded_base(folder)
    is_adapter = recorded is not None or has_adapter(folder)
    overrides = {"dtype": dtype}
    if is_adapter:
        base = base or recorded
        if not base or not Path(base).is_dir():
            raise ExportError(
                f"MODEL {folder} is an adapter over base {recorded!r}, which is not a local folder; "
                "pass --base <local copy of that base>"
            )
        overrides["path"] = base
    return EmbeddingModel.from_pretrained(folder, weights="adapter" if is_adapter else None, **overrides)


__all__ = ["model_folder", "open_model", "recorded_base"]
