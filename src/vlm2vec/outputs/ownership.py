"""Who owns an output folder: `owner.json` records the command that wrote it and what it wrote from,
and `claim_output` refuses a second writer whose results would mix with the folder's.

A claim is taken before a command writes anything: it locks the folder (`lock.FolderLock`), reads
`owner.json` and compares the command and its `match` (model identity, data identity, settings, as
the command defines them) with what the folder holds. The same command with the same `match` reuses
the folder (a resume, or eval's cache); anything else is refused in one line naming both, unless
`overwrite` (`--overwrite`) is given. `record()` writes `owner.json` when the command starts writing;
`release()` removes the lock, and the folder itself if the claim created it and nothing was written.
A folder without `owner.json` (written by an older version) is adopted.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic_files import atomic_write_json
from ..errors import UserError
from .interrupts import Interrupted, as_interrupted
from .lock import LOCK_FILE, FolderLock

OWNER_FILE = "owner.json"
#: set by the `--overwrite` flag of the config commands (seen by every rank of a launch)
OVERWRITE_ENV = "VLM2VEC_OVERWRITE"


class OutputOwnedError(UserError, ValueError):
    """The output folder holds another run's or another model's results; the message names both."""


class OutputFolderError(UserError, OSError):
    """The output folder cannot be used at all (a file, or not writable); the message names it."""


def overwrite_requested() -> bool:
    """Whether `--overwrite` was given to this command."""
    return os.environ.get(OVERWRITE_ENV, "").lower() not in ("", "0", "false", "no")


def digest(value: Any) -> str:
    """A short stable hash of a JSON value (settings, a config section), for `match`."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def read_owner(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The folder's `owner.json`, or None when it has none (or an unreadable one)."""
    path = Path(folder) / OWNER_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _describe(command: str, match: dict[str, Any], details: dict[str, Any], keys: list[str]) -> str:
    shown = [f"{k} {details.get(k, match.get(k))}" for k in keys]
    return command + (f" ({', '.join(shown)})" if shown else "")


@dataclass
class OutputClaim:
    """A folder claimed by this process for `command`; see `claim_output`."""

    folder: Path
    command: str
    match: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)
    continue_hint: str = ""
    lock: FolderLock | None = None
    #: the outermost folder this claim created (the output folder or an ancestor), None: none
    created: Path | None = None

    def record(self) -> None:
        """Write `owner.json` (the claiming process only; idempotent)."""
        if self.lock is None:
            return
        atomic_write_json(
            self.folder / OWNER_FILE,
            {
                "format": 1,
                "command": self.command,
                "match": self.match,
                "details": self.details,
                "program": Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python",
                "host": socket.gethostname(),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )

    def release(self) -> None:
        """Unlock; remove the folder (and `owner.json`) if this claim created it and nothing else was
        written into it."""
        if self.lock is None:
            return
        self.lock.release()
        if self.created is None:
            return
        owner = self.folder / OWNER_FILE
        if owner.is_file() and [p.name for p in self.folder.iterdir()] == [OWNER_FILE]:
            owner.unlink()  # recorded by this claim in the folder it created; nothing else written
        for folder in (self.folder, *self.folder.parents):  # empty ones only, up to what it created
            if not folder.is_dir() or any(folder.iterdir()):
                return
            folder.rmdir()
            if folder == self.created:
                return

    def __enter__(self) -> OutputClaim:
        return self

    def __exit__(self, typ: Any, exc: BaseException | None, tb: Any) -> None:
        self.release()
        interrupted = as_interrupted(exc) if exc is not None else None
        if interrupted is None:
            return
        if not interrupted.message:
            interrupted.message = self.continue_hint
        if interrupted is not exc:
            raise interrupted from None


def _check(folder: Path, command: str, match: dict[str, Any], details: dict[str, Any], key: str) -> None:
    owner = read_owner(folder)
    if owner is None:
        return
    same_command = owner.get("command") == command
    theirs = owner.get("match") or {}
    differ = (
        sorted(k for k in set(theirs) | set(match) if theirs.get(k) != match.get(k)) if same_command else []
    )
    if same_command and not differ:
        return
    what = "results" if same_command else "output"
    raise OutputOwnedError(
        f"{key} {folder} holds the {what} of {_describe(owner.get('command', '?'), theirs, owner.get('details') or {}, differ)}, "
        f"not of this {_describe(command, match, details, differ)}: choose another {key}, or pass --overwrite to write over them"
    )


def claim_output(
    folder: str | os.PathLike,
    command: str,
    match: dict[str, Any],
    *,
    details: dict[str, Any] | None = None,
    key: str = "output folder",
    overwrite: bool | None = None,
    main: bool = True,
    continue_hint: str = "",
) -> OutputClaim:
    """Claim `folder` for `command` before writing into it; use the result as a context manager.

    `match`: what must be equal for this command to reuse the folder (JSON values; a resume or a
    re-run). `details`: readable names recorded beside it (model path, data folder), shown in the
    messages. `key`: the flag or config key that chose the folder, for the messages. `overwrite`: write
    over another owner's folder (None: the `--overwrite` flag). `main`: False on the other ranks of a
    launch, which only check (the main process locks and records). `continue_hint`: what an interrupt
    message says (what is kept, how to continue). Raises `OutputOwnedError` or `OutputLockedError`.
    """
    folder = Path(folder)
    details = dict(details or {})
    overwrite = overwrite_requested() if overwrite is None else overwrite
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{key} {folder} is a file, not a folder: choose another {key}")
    created = next((p for p in (*reversed(folder.parents), folder) if not p.exists()), None)
    claim = OutputClaim(folder, command, dict(match), details, continue_hint, created=created)
    if not main:
        if not overwrite:
            _check(folder, command, claim.match, details, key)
        return claim
    try:
        claim.lock = FolderLock(folder, command).acquire()
    except OSError as exc:
        raise OutputFolderError(f"{key} {folder} cannot be written: {exc.strerror or exc}") from None
    try:
        if not overwrite:
            _check(folder, command, claim.match, details, key)
    except BaseException:
        claim.release()
        raise
    return claim


__all__ = [
    "LOCK_FILE",
    "OVERWRITE_ENV",
    "OWNER_FILE",
    "Interrupted",
    "OutputClaim",
    "OutputFolderError",
    "OutputOwnedError",
    "claim_output",
    "digest",
    "overwrite_requested",
    "read_owner",
]
