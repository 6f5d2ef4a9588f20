"""What mining did, counted for the report: rows written and short, candidates kept and filtered (and
why), score samples. The miner fills a `MineStats`; the report and `mine.json` read it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: why a retrieved candidate was not kept, in the order the checks run (a candidate counts once)
REASONS = ("positive", "same_content", "same_class", "above_margin")


@dataclass
class MineStats:
    """What mining did, for the report."""

    queries: int = 0
    rows_written: int = 0
    rows_short: int = 0
    rows_dropped: int = 0
    retrieved: int = 0
    filtered: Counter = field(default_factory=Counter)
    pos_scores: list[float] = field(default_factory=list)
    neg_scores: list[float] = field(default_factory=list)
    dropped_scores: list[float] = field(default_factory=list)  # candidates above the margin
    per_source: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped_rows: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "rows_written": self.rows_written,
            "rows_short": self.rows_short,
            "rows_dropped": self.rows_dropped,
            "retrieved": self.retrieved,
            "filtered": {r: int(self.filtered.get(r, 0)) for r in REASONS},
            "per_source": self.per_source,
            "skipped_rows": len(self.skipped_rows),
        }
