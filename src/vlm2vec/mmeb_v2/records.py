"""What a MMEB-V2 task reader returns: queries, their relevant items, and the task's distinct candidates.

A candidate is identified by its name, the reference's de-duplication key (a label string, a video
id, a clip folder, a corpus id): the first occurrence of a name wins and is encoded once. A query of a
task with a local pool lists its own candidate names; a global or corpus task ranks every candidate of
the task. `counts` records every rule applied to the data (dropped score-0 qrels, duplicate corpus
ids, ...) so that reports can show them instead of changing data silently.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

from .tasks import LOCAL, Task


@dataclass(frozen=True)
class Candidate:
    """One rankable item: text, a video (frame folder), an image (page) or a mix."""

    name: Hashable
    text: str = ""
    video: Path | None = None
    image: Path | None = None


@dataclass(frozen=True)
class Query:
    """One query (row is 1-based in the annotation order); `relevant` maps names to grades."""

    row: int
    text: str
    relevant: dict[Hashable, float]
    video: Path | None = None
    image: Path | None = None
    candidates: tuple[Hashable, ...] = ()
    video_id: str = ""


@dataclass
class TaskData:
    """A task read from disk. `data_version` goes into cache and result keys; `layout` says which
    published layout variant was found; `all_frames` asks for every frame of a video (no sampling)."""

    task: Task
    queries: list[Query]
    candidates: dict[Hashable, Candidate]
    data_version: str
    layout: str
    counts: dict[str, int] = field(default_factory=dict)
    all_frames: bool = False
    files: list[Path] = field(default_factory=list)

    def pool(self, query: Query) -> list[Hashable]:
        """Names ranked for `query`: its own list (local pool) or every candidate of the task."""
        return list(query.candidates) if self.task.pool == LOCAL else list(self.candidates)

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n


def add_candidate(pool: dict[Hashable, Candidate], cand: Candidate) -> bool:
    """Add `cand` unless its name is present (first occurrence wins); True when it was new."""
    if cand.name in pool:
        return False
    pool[cand.name] = cand
    return True
