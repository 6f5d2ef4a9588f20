"""Reading the text files users hand us (pair files, text corpora, configs) as UTF-8, where a byte that
is not UTF-8 is an expected error naming the file and line, not a `UnicodeDecodeError` traceback: files
saved in Latin-1 or Windows code pages are common, and the fix is to save the file as UTF-8.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .errors import UserError


def _decode(raw: bytes, path: Path, lineno: int, error: type[UserError]) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{path}: line {lineno}, byte {exc.start + 1}: not UTF-8 text ({raw[exc.start]:#04x}); "
            "save the file as UTF-8"
        ) from None


def utf8_lines(path: str | os.PathLike, error: type[UserError]) -> Iterator[tuple[int, str]]:
    """(line number from 1, line with its newline) of a UTF-8 text file; `error(message)` names file
    and line of the first byte that is not UTF-8."""
    path = Path(path)
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            yield lineno, _decode(raw, path, lineno, error)


def read_utf8(path: str | os.PathLike, error: type[UserError]) -> str:
    """The whole text of a UTF-8 file, universal newlines as `Path.read_text`; `error` as in `utf8_lines`."""
    text = "".join(line for _, line in utf8_lines(path, error))
    return text.replace("\r\n", "\n").replace("\r", "\n")


__all__ = ["read_utf8", "utf8_lines"]
