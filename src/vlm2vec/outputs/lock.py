"""A lock file that keeps two processes from writing one output folder at once.

`<folder>/.lock` is created exclusively and holds the writer's pid, host, command and start time; it
is removed when the writer ends. A lock left by a process that died on this host (kill -9, a crash,
a lost node) is stale: it is named in a warning and taken over. A lock of a live process, or of one on
another host (whose liveness cannot be checked from here), refuses the second writer in one line that
names the holder and the lock file.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from ..errors import UserError

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class OutputLockedError(UserError, RuntimeError):
    """Another live process is writing the output folder; the message names it and the lock file."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # half written by a writer killed at that moment: stale


def describe_holder(holder: dict[str, Any]) -> str:
    """`train (pid 123 on node1, since 2026-12-03T15:00:00)` for the messages."""
    return (
        f"{holder.get('command', '?')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
        f"since {holder.get('time', '?')})"
    )


class FolderLock:
    """The lock of one folder, held by this process from `acquire` to `release`."""

    def __init__(self, folder: str | os.PathLike, command: str) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.command = command
        self.held = False

    def _holder(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def _stale(self, holder: dict[str, Any]) -> bool:
        pid = holder.get("pid")
        if not isinstance(pid, int):
            return True
        return holder.get("host") == socket.gethostname() and pid != os.getpid() and not _alive(pid)

    def acquire(self) -> FolderLock:
        """Take the lock, taking over a stale one (named in a warning); `OutputLockedError` if a live
        process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a stale lock removed by a racing process: try again
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read(self.path)
                if not self._stale(holder):
                    other_host = holder.get("host") != socket.gethostname()
                    gone = f"; if that process is gone, delete {self.path}" if other_host else ""
                    raise OutputLockedError(
                        f"{self.path.parent} is being written by {describe_holder(holder)} (lock {self.path}): "
                        f"wait for it to finish or choose another output folder{gone}"
                    ) from None
                logger.warning(
                    "%s: taking over the stale lock of %s, which is no longer running",
                    self.path.parent,
                    describe_holder(holder),
                )
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._holder(), f)
            self.held = True
            return self
        raise OutputLockedError(f"{self.path}: cannot take the lock (it keeps reappearing); retry")

    def release(self) -> None:
        """Remove the lock if this process holds it (idempotent)."""
        if self.held:
            self.held = False
            if _read(self.path).get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)


__all__ = ["LOCK_FILE", "FolderLock", "OutputLockedError", "describe_holder"]
