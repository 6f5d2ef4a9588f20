"""`vlm2vec data`: per MMEB-V2 task, what was found, what is missing and what to download, with no model.

A report, not a check: it exits 0 whether or not every asked task is present (the last line says how
many of the 78 are), and 2 only when the root itself is wrong, so it can be run while downloads go on.
"""

from __future__ import annotations

from ..config import Config


def run(cfg: Config) -> int:
    """Print the data report of the `eval` section's V2 settings."""
    from ..evaluation.v2_data import format_data_report, locate_v2

    print(format_data_report(locate_v2(cfg.eval)))
    return 0
