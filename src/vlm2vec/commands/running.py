"""How a command ends: an expected error (`UserError`) is one `error: ...` line on stderr and exit
status 2, its traceback only under `--debug` (or `VLM2VEC_DEBUG=1`); an interrupt (Ctrl-C, SIGTERM) is
one `interrupted (SIGNAL): ...` line saying what is kept and how to continue, with the shell's exit
status (130, 143); anything else is a bug and keeps its traceback."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

from ..errors import USER_ERROR_EXIT, UserError, storage_error, user_message
from ..outputs.interrupts import Interrupted, raise_on_signals

DEBUG_ENV = "VLM2VEC_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")


def name_deepspeed_accelerator() -> None:
    """DeepSpeed, when installed, is imported by accelerate whenever a model is unwrapped or saved
    (transformers' `save_pretrained`), also in runs that never use it; on a machine without a GPU its
    accelerator detection then warns on every command. Name the accelerator instead (the CPU), unless
    the user did (`DS_ACCELERATOR`); with a GPU the detection is silent and left alone."""
    import torch

    if "DS_ACCELERATOR" not in os.environ and not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"


def _main_rank() -> bool:
    return os.environ.get("RANK", "0") == "0"


def run_command(fn: Callable[[], Any], *, debug: bool | None = None) -> int:
    """Run `fn`; an expected error (`UserError`, also one raised in a DataLoader worker) prints
    `error: <message>` as one line on stderr and returns 2 (with `debug`, after its traceback). SIGINT
    and SIGTERM end it with one line (on the main rank) and return 130 / 143. Anything else is a bug
    and propagates with its traceback. Returns `fn`'s int result or 0."""
    debug = debug_enabled() if debug is None else debug
    try:
        with raise_on_signals():
            try:
                result = fn()
            except OSError as exc:  # a full disk, no permission, a file in the way: one line, too
                expected = storage_error(exc)
                if expected is None:
                    raise
                raise expected from exc
    except UserError as exc:
        if debug:
            traceback.print_exc()
        sys.stdout.flush()
        print(f"error: {user_message(exc)}", file=sys.stderr, flush=True)
        return USER_ERROR_EXIT
    except (KeyboardInterrupt, Interrupted) as exc:
        interrupted = exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)
        if debug:
            traceback.print_exc()
        if _main_rank():
            sys.stdout.flush()
            said = f": {interrupted.message}" if interrupted.message else ""
            print(f"interrupted ({interrupted.signal_name}){said}", file=sys.stderr, flush=True)
        return interrupted.exit_code
    return result if isinstance(result, int) else 0
