"""Interrupts (SIGINT from Ctrl-C, SIGTERM from SLURM, Kubernetes or `kill`) end a command cleanly.

Outside training both signals raise `Interrupted` where the program is, like Ctrl-C does: the files
already written are complete (every write is atomic, every cache chunk is written whole), and the
command's output claim turns the interrupt into one line saying what is kept and how to continue.
During training (`stop_at_step_boundary`) a signal only asks to stop: the loop finishes the step,
saves a checkpoint and raises `Interrupted` with the resume command; a second signal stops at once.
The exit status follows the shell: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A stop asked by a signal; like `KeyboardInterrupt`, not caught by `except Exception`."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message)
        self.signum = signum
        self.message = message

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


def as_interrupted(exc: BaseException) -> Interrupted | None:
    """`exc` as an `Interrupted` (a `KeyboardInterrupt` is a SIGINT), None for anything else."""
    if isinstance(exc, Interrupted):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted(signal.SIGINT)
    return None


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def raise_on_signals() -> Iterator[None]:
    """Within the block SIGTERM raises `Interrupted` like SIGINT raises `KeyboardInterrupt` (the
    commands run in it); the previous handler comes back afterwards."""
    if not _main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class StopRequest:
    """What `stop_at_step_boundary` yields: `signum` of the first stop signal received (0: none)."""

    def __init__(self) -> None:
        self.signum = 0
        self.pid = os.getpid()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self.pid:  # a DataLoader worker forked with the handler: its process decides
            return
        if self.signum:  # asked twice: stop now
            raise Interrupted(signum, "stopped at once on a second signal; nothing of this step was saved")
        self.signum = signum
        if os.environ.get("RANK", "0") != "0":
            return
        print(
            f"{signal.Signals(signum).name}: stopping after this step with a checkpoint "
            "(send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )


@contextlib.contextmanager
def stop_at_step_boundary() -> Iterator[StopRequest]:
    """Within the block SIGINT and SIGTERM only set `StopRequest.signum`; the previous handlers come
    back afterwards. Outside the main thread (no handlers possible) nothing is installed."""
    request = StopRequest()
    if not _main_thread():
        yield request
        return
    previous = {s: signal.signal(s, request._handle) for s in STOP_SIGNALS}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def rerun_command(resume_flag: str | None = None) -> str:
    """The command line of this process, as a user would type it again, with `resume_flag`
    (`--resume`, `--resume-if-present`) added unless it already asks to resume; a distributed run
    says to use the same launcher."""
    argv = list(sys.argv)
    prog = Path(argv[0]).name if argv else "vlm2vec"
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if prog == "__main__.py" and spec is not None:  # python -m package
        head = [Path(sys.executable).name, "-m", spec.parent or spec.name]
    elif prog.endswith(".py"):
        head = [Path(sys.executable).name, argv[0]]
    else:
        head = [prog]
    args = argv[1:]
    if resume_flag and not any(
        a in ("--resume", "--resume-if-present") or a.startswith("--train.resume") for a in args
    ):
        args.append(resume_flag)
    line = shlex.join([*head, *args])
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        line += " (under the same launcher)"
    return line


__all__ = [
    "STOP_SIGNALS",
    "Interrupted",
    "StopRequest",
    "as_interrupted",
    "raise_on_signals",
    "rerun_command",
    "stop_at_step_boundary",
]
