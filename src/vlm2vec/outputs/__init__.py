"""What a command leaves on disk, and how it keeps it safe: one owner per output folder
(`claim_output`: `owner.json` plus a lock file), interrupts that end in a usable state with a one-line
message and the shell's exit status, and the end-of-run summary. Every command that writes a folder
claims it first; see docs/outputs.md for what each command writes and when it is safe to reuse."""

from .interrupts import Interrupted, raise_on_signals, rerun_command, stop_at_step_boundary
from .lock import LOCK_FILE, OutputLockedError
from .ownership import (
    OVERWRITE_ENV,
    OWNER_FILE,
    OutputClaim,
    OutputFolderError,
    OutputOwnedError,
    claim_output,
    digest,
    overwrite_requested,
    read_owner,
)
from .summary import format_summary, print_summary

__all__ = [
    "LOCK_FILE",
    "OVERWRITE_ENV",
    "OWNER_FILE",
    "Interrupted",
    "OutputClaim",
    "OutputFolderError",
    "OutputLockedError",
    "OutputOwnedError",
    "claim_output",
    "digest",
    "format_summary",
    "overwrite_requested",
    "print_summary",
    "raise_on_signals",
    "read_owner",
    "rerun_command",
    "stop_at_step_boundary",
]
