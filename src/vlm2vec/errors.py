"""Expected errors: the ones a person fixes by changing a file, a flag or a folder.

Every error that a user can act on derives from `UserError`. Its message alone says what is wrong and
where (file:line, row, column, key or flag), so the command line prints it as one line and exits 2;
`--debug` (or `VLM2VEC_DEBUG=1`) shows the traceback. Anything else is a bug and keeps its traceback.

Each subclass also derives from the builtin that older callers caught (``ValueError``,
``FileNotFoundError``, ...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

#: exit status of an expected error (argparse uses 2 for usage errors, too)
USER_ERROR_EXIT = 2


class UserError(Exception):
    """An error whose message is complete: shown as one line, exit status 2."""


class ModelLoadError(UserError, ValueError):
    """A model, adapter or checkpoint folder cannot be opened as asked; the message names file and keys."""


class CheckpointError(UserError, ValueError):
    """A training checkpoint is unreadable or incomplete; the message names the file."""


class ResumeError(UserError, ValueError):
    """`--resume` cannot continue this run exactly (changed settings, nothing to resume, missing state)."""


__all__ = ["USER_ERROR_EXIT", "CheckpointError", "ModelLoadError", "ResumeError", "UserError"]
