"""Open the model that evaluation, embedding and mining encode with: the saved folder's settings,
unless set explicitly.

A folder written by `EmbeddingModel.save_pretrained` (train.py's `final/`, an adapter or a merged
model) carries its `ModelConfig` in `vlm2vec.json`: `max_length`, `num_crops`, `normalize`,
`backbone`, pixel limits, prompt format, dtype. Those settings produced the embeddings the model was
trained for, so encoding uses them, whether the folder is given as `model.path=<saved folder>` or
as `model.path=<base> model.checkpoint=<saved adapter folder>`. A key set explicitly (in the YAML
file or on the command line) overrides the saved value; every such override is reported (logged and
recorded in summary.json under `model_settings`), and the `config.yaml` beside the results holds the
settings that ran. Keys that only matter for training (temperature, LoRA hyper-parameters) never
change what runs; set explicitly they are reported as ignored. Folders without `vlm2vec.json` (an
official base model, a released PEFT adapter) run with the requested settings as given.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, ModelConfig, from_dict
from ..config.fields import without_unused_settings

#: ModelConfig fields that say where files are, not how to embed
LOCATION_KEYS = frozenset({"path", "checkpoint"})
#: ModelConfig fields with no effect on embeddings at evaluation
TRAINING_ONLY_KEYS = frozenset(
    {
        "temperature",
        "gradient_checkpointing",
        "lora",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "lora_target_modules",
        "lora_vision",
        "use_dora",
    }
)
META_FILE = "vlm2vec.json"  # = vlm2vec.model.META_FILE (not imported: keeps torch out of this module)


@dataclass
class ResolvedModel:
    """The ModelConfig that runs, where its settings came from, and what was overridden."""

    cfg: ModelConfig
    saved_from: str | None = None  # the vlm2vec.json whose settings were used
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> {"saved", "used"}
    ignored: list[str] = field(default_factory=list)  # explicit training-only keys
    #: settings a base folder implies (`Backbone.folder_defaults`, e.g. a Qwen3-VL-Embedding release's
    #: prompt format), applied where not set explicitly
    folder_defaults: dict[str, Any] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        return {
            "saved_from": self.saved_from,
            "overrides": self.overrides,
            "ignored": self.ignored,
            "folder_defaults": self.folder_defaults,
        }

    def describe(self) -> str:
        """One line for the log: where the settings come from and each override."""
        where = f"settings saved in {self.saved_from}" if self.saved_from else "settings as requested"
        parts = [f"model: {where}"]
        parts += [f"{k}: {v!r} (implied by the folder)" for k, v in self.folder_defaults.items()]
        parts += [f"{k}: {v['saved']!r} -> {v['used']!r} (override)" for k, v in self.overrides.items()]
        if self.ignored:
            parts.append(f"ignored at evaluation (training-only): {', '.join(self.ignored)}")
        return "; ".join(parts)


def _read_meta(folder: Path) -> dict[str, Any]:
    file = folder / META_FILE
    try:
        meta = json.loads(file.read_text())
        return {"kind": meta.get("kind", "full"), "model": dict(meta["model"])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{file}: not a readable vlm2vec model file: {exc}") from None


def _bare(keys: set[str]) -> set[str]:
    """Model field names from dotted ("model.max_length") or bare ("max_length") keys."""
    out = set()
    for key in keys:
        section, _, name = key.partition(".")
        if name and section == "model":
            out.add(name)
        elif not name:
            out.add(section)
    return out


def resolve_model_config(requested: ModelConfig, explicit: set[str]) -> ResolvedModel:
    """The ModelConfig to run: the saved folder's settings, with the `explicit` keys from `requested`.

    `explicit`: the model keys set by the YAML file or the command line (bare or `model.`-prefixed).
    """
    explicit = _bare(explicit)
    valid = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(explicit - valid)
    if unknown:
        raise ConfigError(f"unknown model key(s) {unknown}; valid: {', '.join(sorted(valid))}")
    path = Path(requested.path) if requested.path else None
    ckpt = Path(requested.checkpoint) if requested.checkpoint else None
    saved_from: str | None = None
    if path is not None and (path / META_FILE).is_file():
        if ckpt is not None:
            raise ConfigError(
                f"model.path {str(path)!r} is a saved vlm2vec folder (it holds {META_FILE}); "
                f"model.checkpoint {str(ckpt)!r} cannot be applied on top of it: pass one of them"
            )
        meta = _read_meta(path)
        stored = from_dict(ModelConfig, meta["model"], prefix=f"{path / META_FILE}: model")
        if meta["kind"] == "adapter":  # an adapter over the base recorded at save time
            base = stored.path
            if not base or not Path(base).is_dir():
                raise ConfigError(
                    f"{path} is a LoRA adapter over base model {base!r}, which is not a folder here; pass "
                    f"--model.path=<local base folder> --model.checkpoint={path}"
                )
            run = dataclasses.replace(stored, path=base, checkpoint=str(path))
        else:
            run = dataclasses.replace(stored, path=str(path), checkpoint=None)
        saved_from = str(path / META_FILE)
    elif ckpt is not None and (ckpt / META_FILE).is_file():
        meta = _read_meta(ckpt)
        stored = from_dict(ModelConfig, meta["model"], prefix=f"{ckpt / META_FILE}: model")
        run = dataclasses.replace(stored, path=requested.path, checkpoint=str(ckpt))
        saved_from = str(ckpt / META_FILE)
    else:
        run = requested
    overrides: dict[str, dict[str, Any]] = {}
    if saved_from is not None:
        for key in sorted(explicit - LOCATION_KEYS - TRAINING_ONLY_KEYS):
            saved, used = getattr(run, key), getattr(requested, key)
            if saved != used:
                overrides[key] = {"saved": saved, "used": used}
                run = dataclasses.replace(run, **{key: used})
    # evaluation never trains: no fresh LoRA on a base model, adapters loaded frozen
    run = without_unused_settings(dataclasses.replace(run, lora=False), "lora")
    ignored = sorted(k for k in explicit & TRAINING_ONLY_KEYS if k != "lora" or requested.lora)
    return ResolvedModel(run, saved_from, overrides, ignored)


def apply_folder_defaults(resolved: ResolvedModel, explicit: set[str]) -> ResolvedModel:
    """A base model folder without saved settings may imply some (`Backbone.folder_defaults`: a
    Qwen3-VL-Embedding release embeds in its own prompt format); apply those not set explicitly, as
    `EmbeddingModel.from_pretrained` does, so evaluate.py embeds such a folder as from_pretrained does.

    Imports the backbone registry (torch) only when there is a base folder to look at.
    """
    cfg = resolved.cfg
    if resolved.saved_from is not None or cfg.checkpoint or not cfg.path:
        return resolved
    if not (Path(cfg.path) / "config.json").is_file():
        return resolved  # loading names what is wrong with the folder
    from ..backbones import detect_backbone, get_backbone

    bare = _bare(explicit)
    defaults = get_backbone(cfg.backbone or detect_backbone(cfg.path)).folder_defaults(cfg.path)
    implied = {k: v for k, v in defaults.items() if k not in bare and getattr(cfg, k) != v}
    if not implied:
        return resolved
    return dataclasses.replace(resolved, cfg=dataclasses.replace(cfg, **implied), folder_defaults=implied)


def default_explicit_keys(requested: ModelConfig) -> set[str]:
    """For callers that cannot say which keys were set (the Python API): the fields that differ from
    the ModelConfig defaults count as explicit."""
    default = ModelConfig()
    return {
        f"model.{f.name}"
        for f in dataclasses.fields(ModelConfig)
        if getattr(requested, f.name) != getattr(default, f.name)
    }


def load_embedding_model(
    model_cfg: ModelConfig, explicit: set[str] | None = None, device: Any = None
) -> tuple[Any, ResolvedModel]:
    """Open the model with the settings that should run (`resolve_model_config`): a saved folder's own
    settings unless a key is in `explicit` (dotted or bare model keys; None: the keys that differ
    from the ModelConfig defaults), moved to `device` when given. Returns the model and the
    resolution (what was overridden)."""
    from ..model import EmbeddingModel

    keys = default_explicit_keys(model_cfg) if explicit is None else explicit
    resolved = apply_folder_defaults(resolve_model_config(model_cfg, keys), keys)
    model = EmbeddingModel.from_config(resolved.cfg)
    return (model if device is None else model.to(device)), resolved
