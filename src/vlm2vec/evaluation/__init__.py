"""MMEB evaluation: dataset readers and registry, metrics, the runner and reports.

`evaluate_model(model, eval_cfg) -> summary` runs a model (anything with `processor` + `encode`, e.g.
`vlm2vec.EmbeddingModel`) over a folder in the MMEB-eval format and writes per-dataset results,
predictions and summary reports; `format_table(summary)` renders the comparison with the published
rows. `run_evaluation(cfg)` is what `evaluate.py` calls; with `eval.benchmark: mmeb_v2` the same entry
points run the 78 MMEB-V2 tasks (`v2_runner`, reports in `v2_reports`). The encoding itself (distinct items, the rep
cache, the model fingerprint and model loading) is `vlm2vec.encoding`'s. See docs/evaluation.md.
"""

from .metrics import metrics_from_ranks, positive_rank, score_queries
from .mmeb_eval import (
    DatasetError,
    EvalDataset,
    EvalExample,
    MissingDatasetError,
    find_datasets,
    load_eval_dataset,
)
from .registry import META_TASKS, MMEB_DATASETS, PUBLISHED_RESULTS, DatasetInfo, dataset_info, select_datasets
from .reports import build_summary, format_table, write_reports
from .runner import EvalStats, evaluate_model, run_evaluation

__all__ = [
    "META_TASKS",
    "MMEB_DATASETS",
    "PUBLISHED_RESULTS",
    "DatasetError",
    "DatasetInfo",
    "EvalDataset",
    "EvalExample",
    "EvalStats",
    "MissingDatasetError",
    "build_summary",
    "dataset_info",
    "evaluate_model",
    "find_datasets",
    "format_table",
    "load_eval_dataset",
    "metrics_from_ranks",
    "positive_rank",
    "run_evaluation",
    "score_queries",
    "select_datasets",
    "write_reports",
]
