"""The MMEB runner: select datasets, encode distinct items through the cache, score, write results.

Output folder layout (`eval.output_dir`):
    datasets/<name>.json        metrics of one dataset; written last, it marks the dataset finished
    predictions/<name>.jsonl    per query: positive's rank, correct, top-k candidates with scores
    summary.json / .md / .csv   aggregates beside the published rows; datasets.csv; meta_tasks.png
    cache/<fingerprint>/...     item reps (default cache_dir)

A re-run skips every dataset whose result file matches the model fingerprint and the settings that
change results, and re-encodes nothing the cache holds; an interrupted run resumes from both.
Under several processes (torchrun / accelerate launch) the batches are sharded and gathered, every
process returns the same summary, and only the main process writes files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..config import EvalConfig
from ..files import atomic_write_json, atomic_write_text
from ..matryoshka import truncate_reps
from .cache import RepCache
from .encode import ProcessState, SingleProcess, plan_encoding, run_plan
from .fingerprint import model_fingerprint
from .items import dedup_examples
from .metrics import METRICS, QueryScores, metrics_from_ranks, score_queries
from .mmeb_eval import EvalDataset, MissingDatasetError, find_datasets, load_eval_dataset, parquet_files
from .registry import dataset_info, select_datasets
from .reports import build_summary, write_reports

logger = logging.getLogger(__name__)


@dataclass
class EvalStats:
    """Work counters of one run (all processes together); not part of the results."""

    items_encoded: int = 0
    items_from_cache: int = 0
    distinct_items: int = 0
    naive_slots: int = 0
    datasets_evaluated: list[str] = field(default_factory=list)
    datasets_reused: list[str] = field(default_factory=list)
    encode_seconds: float = 0.0


def _default_state() -> ProcessState:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        from accelerate import PartialState

        return PartialState()
    return SingleProcess()


def _barrier(state: ProcessState) -> None:
    wait = getattr(state, "wait_for_everyone", None)
    if state.num_processes > 1 and wait is not None:
        wait()


def _data_signature(files: list[Path]) -> str:
    """Names and sizes of the dataset's parquet files: a changed file invalidates its result."""
    parts = [f"{f.name}:{f.stat().st_size}" for f in files]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def _result_settings(fingerprint: str, eval_cfg: EvalConfig, signature: str) -> dict[str, Any]:
    """What a dataset's result and predictions files depend on; `top_k_predictions` shapes the
    predictions file, so a change of it re-scores (from the cache) instead of keeping stale top-k lists."""
    return {
        "model_fingerprint": fingerprint,
        "max_queries": eval_cfg.max_queries,
        "top_k_predictions": eval_cfg.top_k_predictions,
        "dim": eval_cfg.dim,
        "data": signature,
    }


def _load_finished(path: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if record.get("settings") == settings else None


def _predictions_jsonl(ds: EvalDataset, scored: list[QueryScores]) -> str:
    lines = []
    for q, (ex, s) in enumerate(zip(ds.examples, scored)):
        top = [
            {"candidate": j, "score": score, "text": ex.tgt_texts[j], "image": ex.tgt_imgs[j]}
            for j, score in s.top
        ]
        row = {
            "query": q,
            "qry_text": ex.qry_text,
            "qry_image": ex.qry_img,
            "rank": s.rank,
            "correct": s.rank == 1,
            "top": top,
        }
        lines.append(json.dumps(row, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def _model_name(model: Any) -> str:
    cfg = getattr(model, "cfg", None)
    return str(getattr(cfg, "checkpoint", None) or getattr(cfg, "path", None) or type(model).__name__)


def _config_dict(model: Any, eval_cfg: EvalConfig) -> dict[str, Any]:
    cfg = getattr(model, "cfg", None)
    model_part = (
        dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type) else {}
    )
    return {"model": model_part, "eval": dataclasses.asdict(eval_cfg)}


def _evaluate_dataset(
    model: Any,
    ds: EvalDataset,
    eval_cfg: EvalConfig,
    cache_dir: Path,
    fingerprint: str,
    state: ProcessState,
    stats: EvalStats,
) -> tuple[dict[str, Any], list[QueryScores]]:
    dd = dedup_examples(ds.examples)
    plans = {
        side: plan_encoding(
            items, eval_cfg.batch_size, RepCache.for_dataset(cache_dir, fingerprint, ds.name, side)
        )
        for side, items in (("qry", dd.qry_items), ("tgt", dd.tgt_items))
    }
    todo = sum(p.num_todo_items for p in plans.values())
    stats.items_encoded += todo
    stats.items_from_cache += dd.num_items - todo
    stats.distinct_items += dd.num_items
    stats.naive_slots += dd.naive_slots
    start = time.perf_counter()
    with tqdm(total=todo, desc=f"encode {ds.name}", unit="item", disable=not state.is_main_process) as bar:
        reps = {
            side: run_plan(
                model,
                plan,
                image_root=ds.image_root,
                state=state,
                chunk_items=eval_cfg.cache_chunk_items,
                num_workers=eval_cfg.num_workers,
                bar=bar,
            )
            for side, plan in plans.items()
        }
    stats.encode_seconds += time.perf_counter() - start
    if eval_cfg.dim is not None:  # the cache holds full-size reps; a Matryoshka dim is cut here
        reps = {
            side: truncate_reps(r, eval_cfg.dim, "eval.dim") if r.numel() else r for side, r in reps.items()
        }
    scored = score_queries(reps["qry"], reps["tgt"], dd, top_k=eval_cfg.top_k_predictions)
    info = dataset_info(ds.name)
    record = {
        **metrics_from_ranks([s.rank for s in scored]),
        "num_queries": dd.num_queries,
        "meta_task": info.meta_task,
        "split": info.split,
        "distinct_items": dd.num_items,
        "naive_slots": dd.naive_slots,
    }
    return record, scored


def evaluate_model(
    model: Any,
    eval_cfg: EvalConfig,
    *,
    state: ProcessState | None = None,
    stats: EvalStats | None = None,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Evaluate `model` (`processor` + `encode`) on `eval_cfg.data_dir`; write results; return the summary.

    Every process must call this under a multi-process launch; all return the same summary.
    """
    if not eval_cfg.data_dir:
        raise ValueError("eval.data_dir is not set: point it at a local MMEB-eval folder")
    state = state or _default_state()
    stats = stats if stats is not None else EvalStats()
    out = Path(eval_cfg.output_dir)
    cache_dir = Path(eval_cfg.cache_dir) if eval_cfg.cache_dir else out / "cache"
    model.eval()
    fingerprint = model_fingerprint(model)

    found = find_datasets(eval_cfg.data_dir)
    names = select_datasets(eval_cfg.datasets, eval_cfg.meta_tasks, found)
    absent = [n for n in names if n not in found]
    if absent and not eval_cfg.skip_missing:
        raise MissingDatasetError(
            f"{len(absent)} dataset(s) not found under {eval_cfg.data_dir!r}: {', '.join(absent)} "
            "(set eval.skip_missing=true to skip them, or eval.datasets / eval.meta_tasks to choose)"
        )
    missing = {
        n: {
            "meta_task": dataset_info(n).meta_task,
            "split": dataset_info(n).split,
            "reason": "no parquet files in data_dir",
        }
        for n in absent
    }

    records: dict[str, dict[str, Any]] = {}
    for name in (n for n in names if n not in missing):
        settings = _result_settings(
            fingerprint, eval_cfg, _data_signature(parquet_files(eval_cfg.data_dir, name))
        )
        result_path = out / "datasets" / f"{name}.json"
        finished = _load_finished(result_path, settings)
        if finished is not None:
            records[name] = finished["metrics"]
            stats.datasets_reused.append(name)
            continue
        ds = load_eval_dataset(
            eval_cfg.data_dir, name, image_root=eval_cfg.image_root, max_queries=eval_cfg.max_queries
        )
        record, scored = _evaluate_dataset(model, ds, eval_cfg, cache_dir, fingerprint, state, stats)
        if state.is_main_process:
            atomic_write_text(out / "predictions" / f"{name}.jsonl", _predictions_jsonl(ds, scored))
            atomic_write_json(result_path, {"dataset": name, "settings": settings, "metrics": record})
            logger.info("%s: %s", name, ", ".join(f"{m}={record[m]:.2f}" for m in METRICS))
        records[name] = record
        stats.datasets_evaluated.append(name)
        _barrier(state)

    summary = build_summary(
        records,
        missing,
        model=model_name or _model_name(model),
        fingerprint=fingerprint,
        config=_config_dict(model, eval_cfg),
    )
    if state.is_main_process:
        write_reports(summary, out)
    _barrier(state)
    return summary


def load_model_for_eval(model_cfg: Any) -> Any:
    """`model.path` saved by us (holds vlm2vec.json): open it with its stored settings, taking only the
    runtime choices (dtype, attention) from `model_cfg`; otherwise build from `model_cfg` as given."""
    from ..model import META_FILE, EmbeddingModel

    if model_cfg.path and (Path(model_cfg.path) / META_FILE).is_file():
        return EmbeddingModel.from_pretrained(
            model_cfg.path, dtype=model_cfg.dtype, attn_implementation=model_cfg.attn_implementation
        )
    return EmbeddingModel.from_config(model_cfg)


def run_evaluation(cfg: Any) -> dict[str, Any]:
    """Entry point behind evaluate.py: load the model from `cfg.model`, evaluate, print the table."""
    import torch
    from accelerate import PartialState

    from ..config import save_config
    from .reports import format_table

    state = PartialState(cpu=not torch.cuda.is_available())
    model = load_model_for_eval(cfg.model).to(state.device)
    if state.is_main_process:
        save_config(cfg, Path(cfg.eval.output_dir) / "config.yaml")
    summary = evaluate_model(model, cfg.eval, state=state)
    if state.is_main_process:
        print(format_table(summary))
    return summary
