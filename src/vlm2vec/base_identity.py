"""Which base model an adapter belongs to: a fingerprint of the base folder, recorded when an adapter
is saved and compared when it is loaded, so an adapter opened over another base (same shapes or not)
is refused in one line instead of producing wrong embeddings or a shape traceback.

The fingerprint is BLAKE2b over the base folder's `config.json` (parsed, without the keys that name
where or by which version it was written) and, per weight file (`*.safetensors`, `*.bin`, in name
order), its name, its size and 64 samples of 4 KiB at evenly spaced offsets (a small file is read
whole). That reads at most 256 KiB per file whatever the model's size, does not change when the
folder is copied or moved, and changes for any other base: another shape changes the config and the
sizes, other weights of the same shape change the sampled bytes (training changes nearly every byte
of a tensor). A base re-saved in another dtype or sharding counts as another base.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .errors import ModelLoadError

#: places sampled in each weight file, and the bytes read at each
SAMPLES_PER_FILE = 64
SAMPLE_BYTES = 4096
#: config.json keys that say where or by which version a folder was written, not what it holds
_CONFIG_NOISE = ("_name_or_path", "transformers_version")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def _sampled_bytes(file: Path, h: Any) -> None:
    size = file.stat().st_size
    h.update(f"{file.name}:{size}\n".encode())
    with file.open("rb") as f:
        if size <= SAMPLES_PER_FILE * SAMPLE_BYTES:
            h.update(f.read())
            return
        step = (size - SAMPLE_BYTES) // (SAMPLES_PER_FILE - 1)
        for i in range(SAMPLES_PER_FILE):
            f.seek(i * step)
            h.update(f.read(SAMPLE_BYTES))


def base_fingerprint(folder: str | os.PathLike) -> str:
    """Hex digest (32 chars) identifying the base model in `folder` (see the module docstring)."""
    folder = Path(folder)
    h = hashlib.blake2b(digest_size=16)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"{folder / 'config.json'}: cannot read the base model's config ({exc})"
        ) from None
    if isinstance(config, dict):
        config = {k: v for k, v in config.items() if k not in _CONFIG_NOISE}
    h.update(json.dumps(config, sort_keys=True).encode())
    files = sorted(
        p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.name not in _ADAPTER_FILES
    )
    for file in files:
        _sampled_bytes(file, h)
    return h.hexdigest()


def base_record(base: str | os.PathLike | None) -> dict[str, str] | None:
    """What an adapter's `vlm2vec.json` records of its base (None when the base is not a local folder)."""
    if not base or not (Path(base) / "config.json").is_file():
        return None
    return {"path": str(Path(base).resolve()), "fingerprint": base_fingerprint(base)}


def check_adapter_base(
    record: dict[str, Any] | None, adapter: str | os.PathLike, base: str | os.PathLike
) -> None:
    """`ModelLoadError` naming both folders when the adapter in `adapter`, trained on the base `record`
    describes, is loaded over another base `base`. No record (a released adapter, or one saved before
    the record existed): nothing to compare, it loads as before."""
    if not record or not record.get("fingerprint"):
        return
    now = base_fingerprint(base)
    if now != record["fingerprint"]:
        raise ModelLoadError(
            f"model.checkpoint {adapter} is an adapter trained on base {record.get('path')} (fingerprint "
            f"{record['fingerprint'][:12]}), but model.path {base} holds another model (fingerprint "
            f"{now[:12]}); load it over the base it was trained on"
        )


__all__ = ["base_fingerprint", "base_record", "check_adapter_base"]
