"""Atomic training checkpoints: weights (or only the trainable ones), optimizer, scheduler, RNG, data position.

Layout: `<output_dir>/checkpoints/step-00000100/` holding what `accelerate.Accelerator.save_state`
writes (model or DeepSpeed engine shards, or FSDP2's `fsdp2_state/` written by the hooks of
`training/fsdp2_state.py`; optimizer, scheduler, one RNG file per process) plus
`trainer_state.json` (step, data order fingerprint, counters). Every rank writes into
`.tmp-step-.../` first; when all are done the main process fsyncs every file written (weights,
optimizer, scheduler, RNG), then writes `trainer_state.json` (the completion marker), renames the
folder and fsyncs the parent, so a `step-*` folder is always complete, also after a power cut, and a
kill at any moment leaves the previous checkpoint as the latest. Pruning renames a folder to
`.prune-*` before deleting it; `remove_stale_temporaries` (run at every start) deletes what a kill
left of saves, prunes and the `final/` export. `readable_checkpoint` checks, cheaply, that every file
of a checkpoint is whole before `--resume` trusts it. The folder must be on storage that every node
sees (multi-node runs).

LoRA runs store only the trainable parameters (the adapters), not the frozen base: a few MB instead
of the whole model; full fine-tuning stores everything.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import struct
import zipfile
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import DistributedType

from ..atomic_files import atomic_write_json, replace_dir
from ..errors import CheckpointError, ResumeError

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
RNG_FILE = "random_states_{}.pkl"  # accelerate's name, one per process
#: the folders `export_model` writes; a kill during `save_pretrained` leaves `.<name>.*` beside them
EXPORT_DIRS = ("final", "final_merged")
_STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoints_root(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints as (step, folder), oldest first."""
    root = checkpoints_root(output_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def fsync_tree(folder: Path) -> None:
    """Flush every file under `folder`, then the folders themselves, to disk."""
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(dirpath))


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_file(path: Path) -> None:
    """Raise `CheckpointError` naming `path` if it is cut short or unparsable (reads headers only)."""
    try:
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".safetensors":
            with path.open("rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if path.stat().st_size != 8 + n + end:
                raise ValueError(f"{path.stat().st_size} bytes, the header describes {8 + n + end}")
        elif path.suffix in (".bin", ".pt", ".pth", ".pkl"):
            with zipfile.ZipFile(path) as z:  # torch.save files are zip archives; reads the directory
                z.infolist()
    except (OSError, ValueError, KeyError, struct.error, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None


def readable_checkpoint(path: Path, num_processes: int) -> dict[str, Any]:
    """Check that checkpoint `path` is whole and return its trainer state. A cut or unparsable file is
    a `CheckpointError` naming it (callers fall back to an older checkpoint); a missing RNG file is a
    `ResumeError`: without it dropout would not repeat, and the resume would not be exact."""
    for i in range(num_processes):
        if not (path / RNG_FILE.format(i)).is_file():
            raise ResumeError(
                f"{path / RNG_FILE.format(i)} is missing: the RNG state of process {i} is needed to "
                f"resume exactly (is the number of processes the one the checkpoint was written with?)"
            )
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        _check_file(file)
    state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path / STATE_FILE}: no 'step' in it")
    return state


def newest_readable_checkpoint(
    output_dir: str | os.PathLike, num_processes: int
) -> tuple[Path | None, dict[str, Any]]:
    """The newest complete checkpoint whose files are whole, and its trainer state. A broken newest one
    is skipped with a warning naming the broken file; if every one is broken, `CheckpointError`."""
    found = list_checkpoints(output_dir)
    broken = []
    for _, path in reversed(found):
        try:
            state = readable_checkpoint(path, num_processes)
        except CheckpointError as exc:
            broken.append(str(exc))
            logger.warning("checkpoint %s cannot be used: %s; trying the previous one", path.name, exc)
            continue
        if broken:
            logger.warning("resuming from %s instead", path)
        return path, state
    if broken:
        raise CheckpointError(f"no usable checkpoint in {checkpoints_root(output_dir)}: {'; '.join(broken)}")
    return None, {}


def _is_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def install_trainable_only_hook(accelerator: Accelerator) -> None:
    """Make `save_state` keep only parameters that require grad (LoRA adapters), not the frozen base.

    Loading then uses `strict=False` (see `load_checkpoint`); the frozen weights come from the base
    model folder, as at the start of the run.
    """

    def keep_trainable(models: list, weights: list[dict], _output_dir: str) -> None:
        for i, model in enumerate(models):
            names = {n for n, p in model.named_parameters() if p.requires_grad}
            weights[i] = {k: v for k, v in weights[i].items() if k in names}

    accelerator.register_save_state_pre_hook(keep_trainable)


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: str | os.PathLike,
    step: int,
    state: dict[str, Any],
    *,
    keep_last: int = 0,
    trainable_only: bool = False,
) -> Path:
    """Collective: every rank must call it. Returns the final folder; prunes to the newest `keep_last`
    checkpoints (0 keeps all)."""
    root = checkpoints_root(output_dir)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    kwargs = {"exclude_frozen_parameters": trainable_only} if _is_deepspeed(accelerator) else {}
    accelerator.save_state(str(tmp), **kwargs)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        fsync_tree(tmp)  # weights, optimizer, scheduler, RNG on disk before the completion marker
        atomic_write_json(tmp / STATE_FILE, {**state, "step": step})
        # the same step saved again (e.g. the final step after a resume) replaces the old folder
        replace_dir(tmp, final, old=root / f".old-step-{step:08d}")
        fsync_dir(root)
        if keep_last > 0:
            for _, path in list_checkpoints(output_dir)[:-keep_last]:
                prune = root / f".prune-{path.name}"
                os.replace(path, prune)  # atomic: never a half-deleted step-* folder that looks complete
                shutil.rmtree(prune, ignore_errors=True)
        logger.info("saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(
    accelerator: Accelerator, path: str | os.PathLike, *, trainable_only: bool = False
) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG from `path` (collective); returns its trainer state."""
    path = Path(path)
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(f"{path} is not a complete checkpoint (no {STATE_FILE})")
    if _is_deepspeed(accelerator):
        kwargs: dict[str, Any] = {"load_module_strict": not trainable_only}
    else:
        kwargs = {"strict": not trainable_only}
    try:
        accelerator.load_state(str(path), **kwargs)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: cannot load ({type(exc).__name__}: {exc})") from exc
    return json.loads(state_file.read_text())


def remove_stale_temporaries(output_dir: str | os.PathLike) -> list[Path]:
    """Tidy what a killed save, prune or export left behind (main process, at every start): delete
    `.tmp-*` and `.prune-*` checkpoint folders and `.final.*` export folders; put back an `.old-*`
    folder whose replacement never arrived, delete it otherwise. Returns what was removed or restored."""
    out = Path(output_dir)
    tidied: list[Path] = []

    def restore_or_drop(old: Path, final: Path) -> None:
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, final)
        tidied.append(old)

    root = checkpoints_root(out)
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith((".tmp-step-", ".prune-")):
                shutil.rmtree(path, ignore_errors=True)
                tidied.append(path)
            elif path.name.startswith(".old-step-"):
                restore_or_drop(path, root / path.name[len(".old-") :])
    if out.is_dir():
        for name in EXPORT_DIRS:
            for path in out.glob(f".{name}.*"):
                if path.name == f".{name}.old":
                    restore_or_drop(path, out / name)
                elif path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                    tidied.append(path)
    for path in tidied:
        logger.info("removed what an interrupted save left: %s", path)
    return tidied
