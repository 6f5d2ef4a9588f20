"""Every candidate's score, in blocks of queries: the exact scoring of rankers that order a whole pool.

MMEB-V2's global and corpus tasks rank every distinct candidate of a task (ties and grades need all
scores, not a top-k), so they take full score rows from here, block by block, instead of a top-k from
`search`. Only numpy: the evaluator imports it without the corpus commands' dependencies.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def score_blocks(queries: np.ndarray, corpus: np.ndarray, block: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first query, [block, Nc] inner products) per block of `block` queries."""
    for start in range(0, len(queries), block):
        yield start, queries[start : start + block] @ corpus.T
