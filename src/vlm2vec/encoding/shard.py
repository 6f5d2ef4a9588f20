"""Deal a schedule's batches to the processes, one chunk at a time.

The batches to encode are grouped into chunks of about `chunk_items` items per process; each chunk is
dealt round-robin, so every process holds the same number of chunks (some maybe empty) and takes part
in every chunk's gather. After each chunk the reps reach every process and the main process writes
them to the cache: an interrupted run keeps every finished chunk. Which process encodes a batch never
changes the batch, so one process and several give bitwise the same reps.
"""

from __future__ import annotations

from ..distributed import ProcessState


def shard_chunks(
    todo: list[list[int]], largest_batch: int, chunk_items: int, state: ProcessState
) -> list[list[list[int]]]:
    """This process's batches of each chunk, in chunk order."""
    world, rank = state.num_processes, state.process_index
    per_chunk = max(1, chunk_items // largest_batch) * world
    return [todo[s : s + per_chunk][rank::world] for s in range(0, len(todo), per_chunk)]
