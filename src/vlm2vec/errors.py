"""Expected errors: the ones a person fixes by changing a file, a flag or a folder.

Every error that a user can act on derives from `UserError`. Its message alone says what is wrong and
where (file:line, row, column, key or flag), so the command line prints it as one line and exits 2;
`--debug` (or `VLM2VEC_DEBUG=1`) shows the traceback. Anything else is a bug and keeps its traceback.

Each subclass also derives from the builtin that older callers caught (``ValueError``,
``FileNotFoundError``, ...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import errno

#: exit status of an expected error (argparse uses 2 for usage errors, too)
USER_ERROR_EXIT = 2


class UserError(Exception):
    """An error whose message is complete: shown as one line, exit status 2."""


class ModelLoadError(UserError, ValueError):
    """A model, adapter or checkpoint folder cannot be opened as asked; the message names file and keys."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """A model, adapter or checkpoint folder (or its config.json) does not exist; the message names it."""


class CheckpointError(UserError, ValueError):
    """A training checkpoint is unreadable or incomplete; the message names the file."""


class ResumeError(UserError, ValueError):
    """`--resume` cannot continue this run exactly (changed settings, nothing to resume, missing state)."""


class DataError(UserError, ValueError):
    """A training data file or folder cannot be used as configured; the message names the file."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A configured data file or folder does not exist; the message names it."""


class DatasetError(UserError, ValueError):
    """Bad or missing evaluation data; the message names the dataset, file, row or column."""


class ArgumentError(UserError, ValueError):
    """A bad argument to a function of the Python API (`EmbeddingModel.embed`); the message names it."""


class StorageError(UserError, OSError):
    """A file or folder cannot be written where asked (a full disk, no permission, a file where a folder
    should be); the message names the path and what to do."""


#: errno -> what the user does about it; any other OSError stays a bug with its traceback
_STORAGE_ERRNOS = {
    errno.ENOSPC: "free space or choose another output folder",
    errno.EDQUOT: "free space or choose another output folder",
    errno.EACCES: "choose a path you may use, or fix its permissions",
    errno.EPERM: "choose a path you may use, or fix its permissions",
    errno.EROFS: "choose a folder on a writable file system",
    errno.ENOTDIR: "a file stands where a folder is needed: choose another output folder",
    errno.EEXIST: "a file stands where a folder is needed: choose another output folder",
    errno.EISDIR: "a folder stands where a file is needed: choose another output path",
}


def storage_error(exc: OSError) -> StorageError | None:
    """The one-line `StorageError` for an OS error a user fixes by freeing space or choosing another
    place (full disk, permissions, read-only, a file in the way), naming the path; None for others."""
    advice = _STORAGE_ERRNOS.get(exc.errno) if exc.errno is not None else None
    if advice is None:
        return None
    where = exc.filename if exc.filename is not None else "an output file"
    return StorageError(f"{where}: {exc.strerror or exc}; {advice}")


def user_message(exc: BaseException) -> str:
    """The one-line message of an expected error. An error raised in a DataLoader worker arrives
    re-raised by torch with the worker's whole traceback as its message; keep only the original
    message (the text after the last `module.Class: ` line of that traceback)."""
    text = str(exc)
    if text.startswith("Caught ") and "DataLoader worker" in text:
        cls = type(exc)
        marker = f"{cls.__module__}.{cls.__qualname__}: "
        at = text.rfind(marker)
        if at >= 0:
            text = text[at + len(marker) :]
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def unwrap_worker_error(exc: UserError) -> UserError:
    """The same error class with only its original message (see `user_message`), for errors that
    crossed from a DataLoader worker; `exc` itself when it cannot be rebuilt from a message."""
    message = user_message(exc)
    if message == str(exc):
        return exc
    try:
        return type(exc)(message)
    except Exception:
        return exc


__all__ = [
    "USER_ERROR_EXIT",
    "ArgumentError",
    "CheckpointError",
    "DataError",
    "DataNotFoundError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ResumeError",
    "StorageError",
    "UserError",
    "storage_error",
    "unwrap_worker_error",
    "user_message",
]


class MissingExtraError(UserError, ImportError):
    """A feature needs a package of an optional extra that is not installed; the message says which."""


def import_extra(module: str, *, needed_for: str, extra: str = "train"):
    """Import `module`, or raise a `MissingExtraError` naming the setting that needs it and the extra
    that installs it (a user who only embeds installs no training-only package)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{needed_for} needs {module.split('.')[0]}, part of the '{extra}' extra: pip install 'vlm2vec[{extra}]'"
        ) from exc
