"""How a command ends: an expected error (`UserError`) is one `error: ...` line on stderr and exit
status 2, its traceback only under `--debug` (or `VLM2VEC_DEBUG=1`); anything else is a bug and keeps
its traceback."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from ..errors import USER_ERROR_EXIT, UserError, storage_error, user_message

DEBUG_ENV = "VLM2VEC_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")


def run_command(fn: Callable[[], Any], *, debug: bool | None = None) -> int:
    """Run `fn`; an expected error (`UserError`, also one raised in a DataLoader worker) prints
    `error: <message>` as one line on stderr and returns 2 (with `debug`, after its traceback).
    Anything else is a bug and propagates with its traceback. Returns `fn`'s int result or 0."""
    debug = debug_enabled() if debug is None else debug
    try:
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
    return result if isinstance(result, int) else 0
