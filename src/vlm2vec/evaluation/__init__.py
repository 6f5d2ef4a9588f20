"""MMEB evaluation: distinct-item encoding with a resumable cache, metrics, the runner and reports.

`evaluate_model(model, eval_cfg) -> summary` runs a model (anything with `processor` + `encode`, e.g.
`vlm2vec.EmbeddingModel`) over a folder in the MMEB-eval format and writes per-dataset results,
predictions and summary reports; `format_table(summary)` renders the comparison with the published
rows. `run_evaluation(cfg)` is what `evaluate.py` calls. See docs/evaluation.md.
"""

from .fingerprint import model_fingerprint
from .items import DedupedDataset, Item, dedup_examples, item_key
from .metrics import metrics_from_ranks, positive_rank, score_queries
from .mmeb_eval import (
    DatasetError,
    EvalDataset,
    EvalExample,
    MissingDatasetError,
    find_datasets,
    load_eval_dataset,
)
from .model_settings import ResolvedModel, resolve_model_config
from .registry import META_TASKS, MMEB_DATASETS, PUBLISHED_RESULTS, DatasetInfo, dataset_info, select_datasets
from .reports import build_summary, format_table, write_reports
from .runner import EvalStats, evaluate_model, load_model_for_eval, run_evaluation

__all__ = [
    "META_TASKS",
    "MMEB_DATASETS",
    "PUBLISHED_RESULTS",
    "ResolvedModel",
    "DatasetError",
    "DatasetInfo",
    "DedupedDataset",
    "EvalDataset",
    "EvalExample",
    "EvalStats",
    "Item",
    "MissingDatasetError",
    "build_summary",
    "dataset_info",
    "dedup_examples",
    "evaluate_model",
    "find_datasets",
    "format_table",
    "item_key",
    "load_eval_dataset",
    "load_model_for_eval",
    "metrics_from_ranks",
    "model_fingerprint",
    "positive_rank",
    "resolve_model_config",
    "run_evaluation",
    "score_queries",
    "select_datasets",
    "write_reports",
]
