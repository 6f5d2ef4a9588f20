"""Atomic writes: a reader sees the old complete file (or folder) or the new one, never a partial one.

Files are written to a temp name beside the target, then `os.replace`d into place, readable as the
umask allows whatever library wrote them; an interrupted run
leaves only `*.tmp-*` files, which every reader here ignores. Folders (checkpoints, saved models) are
built under a temp name and swapped in with `replace_dir`, which gives them the mode of a plain
`mkdir` (a temp folder is private until then).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def is_temp(path: Path) -> bool:
    return ".tmp-" in path.name


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path to write to; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        _add_read_bits(tmp, _umask())
        os.replace(tmp, path)
    except OSError as exc:  # a write error (a full disk) names no file: name the one being written
        if exc.filename is None:
            exc.filename = str(path)
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write, flush to disk (checkpoint state must survive a power cut), then move into place."""
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _add_read_bits(path: Path, mask: int) -> None:
    """Add the read (and, for folders, search) bits the umask allows; libraries that write through
    their own temp files (safetensors) leave them 0600."""
    wanted = (0o555 if path.is_dir() else 0o444) & ~mask
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode | wanted != mode:
        os.chmod(path, mode | wanted)


def publish_mode(folder: str | os.PathLike) -> None:
    """Make a folder built under a temp name readable as the umask allows, like any file the user
    writes: `tempfile.mkdtemp` makes it 0700, and the files in it may be 0600 (see `_add_read_bits`)."""
    mask = _umask()
    folder = Path(folder)
    os.chmod(folder, 0o777 & ~mask)
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            _add_read_bits(Path(root) / name, mask)


def replace_dir(
    tmp: str | os.PathLike, final: str | os.PathLike, old: str | os.PathLike | None = None
) -> Path:
    """Move the finished folder `tmp` to `final`, replacing what is there. An existing `final` is first
    renamed aside (to `old`, default `.<name>.old`), so at every moment either the old or the new folder
    is complete on disk, and a crash in between leaves the old one where recovery can find it."""
    tmp, final = Path(tmp), Path(final)
    publish_mode(tmp)
    if final.exists():
        old = Path(old) if old is not None else final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return final
