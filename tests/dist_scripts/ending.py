"""How every multi-process test worker ends: at once, with `os._exit`.

With gloo, ranks often abort at interpreter teardown after collectives ("terminate called without an
active exception"), and an exception at teardown can hang the launcher; so a worker flushes, destroys
the process group and leaves with `os._exit(0)`, or prints its traceback and leaves with 1.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

import torch.distributed as dist


def run_and_exit(main: Callable[[], object]) -> None:
    """Run a worker's `main`, then leave the process as the module docstring says."""
    try:
        main()
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
