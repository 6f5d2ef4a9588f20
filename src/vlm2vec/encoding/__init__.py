"""Encoding: distinct items -> encode schedule -> cached reps, shared by evaluation and corpus work.

An encoder (anything with `processor` + `encode`, e.g. `vlm2vec.EmbeddingModel`, opened with
`load_embedding_model`) turns distinct items (`items`) into representations. A side's items are cut
into length-sorted batches (`schedule.EncodeSchedule`, by rows or by estimated tokens from
`token_counts`); the batches the rep cache (`cache.RepCache`, keyed by `fingerprint.model_fingerprint`
and item keys) does not hold are dealt to the processes (`shard`), prepared in DataLoader workers
(`loader`), encoded and written back to the cache chunk by chunk (`encode.encode_schedule`), with
their throughput measured beside (`meter`).
"""

from .cache import RepCache
from .encode import encode_schedule
from .fingerprint import model_fingerprint
from .items import DedupedDataset, Item, ItemSource, dedup_examples, item_key
from .meter import ThroughputMeter, combine_throughput, describe_throughput
from .model_loading import ResolvedModel, load_embedding_model, resolve_model_config
from .schedule import EncodeSchedule, schedule_encoding
from .token_counts import item_token_counts

__all__ = [
    "DedupedDataset",
    "EncodeSchedule",
    "Item",
    "ItemSource",
    "RepCache",
    "ResolvedModel",
    "ThroughputMeter",
    "combine_throughput",
    "dedup_examples",
    "describe_throughput",
    "encode_schedule",
    "item_key",
    "item_token_counts",
    "load_embedding_model",
    "model_fingerprint",
    "resolve_model_config",
    "schedule_encoding",
]
