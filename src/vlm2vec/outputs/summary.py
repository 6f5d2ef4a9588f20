"""The end-of-run summary every writing command prints on its main process: what was written where,
the headline figures, and the command a user would run next. A few lines, the same shape for train,
eval, embed and mine, so a user finds the same three things in the same place after any of them."""

from __future__ import annotations

import os
from collections.abc import Sequence


def format_summary(
    title: str,
    written: Sequence[tuple[str, str | os.PathLike]],
    figures: Sequence[str] = (),
    next_command: str | None = None,
) -> str:
    """`title`, then one `wrote` line per (what, where), the `figures` on one line, and `next`."""
    width = max((len(what) for what, _ in written), default=0)
    lines = [f"== {title}"]
    lines += [f"  wrote {what:<{width}}  {where}" for what, where in written]
    if figures:
        lines.append(f"  {'; '.join(figures)}")
    if next_command:
        lines.append(f"  next: {next_command}")
    return "\n".join(lines)


def print_summary(
    title: str,
    written: Sequence[tuple[str, str | os.PathLike]],
    figures: Sequence[str] = (),
    next_command: str | None = None,
) -> None:
    """Print `format_summary(...)` (call it on the main process only)."""
    print(format_summary(title, written, figures, next_command), flush=True)


__all__ = ["format_summary", "print_summary"]
