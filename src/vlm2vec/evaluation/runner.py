"""The MMEB runner: select datasets, encode distinct items through the cache, score, write results.

Output folder layout (`eval.output_dir`):
    datasets/<name>.json        metrics of one dataset; written last, it marks the dataset finished
    throughput/<name>.json      items/s, input-wait share, GPU utilisation of the run that encoded it
    predictions/<name>.jsonl    per query: positive's rank, correct, top-k candidates with scores
    summary.json / .md / .csv   aggregates beside the published rows; datasets.csv; meta_tasks.png
    cache/<fingerprint>/<batch layout>/...  item reps (default cache_dir)

A re-run skips every dataset whose result file matches what the result came from -- the model
fingerprint, a hash of the parquet bytes, every image's path, size and mtime, and the settings that
change results (tie rule, max_queries, top_k_predictions, the batch layout) -- and re-encodes nothing the cache holds
(item keys hold the image's size and mtime too); an interrupted run resumes from both. A same-size
edit of a parquet file is therefore re-scored.

Completeness: the default selection is all 36 MMEB datasets plus any other dataset folder found.
Selected datasets absent from `eval.data_dir` fail the run, all of them named, unless
`eval.skip_missing=true` asks for a partial run: then they are listed as missing in every report and
every mean says over how many datasets it runs and is marked partial. A `data_dir` holding no MMEB
dataset, or one level too high, is an error naming the folder to pass.
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

from ..config import ConfigError, EvalConfig
from ..files import atomic_write_json, atomic_write_text
from ..matryoshka import truncate_reps
from .cache import RepCache
from .encode import ItemSource, ProcessState, SingleProcess, _gather, plan_encoding, run_plan
from .fingerprint import model_fingerprint
from .items import dedup_examples
from .metrics import METRICS, QueryScores, check_tie_rule, metrics_from_ranks, score_queries
from .mmeb_eval import (
    DatasetError,
    EvalDataset,
    MissingDatasetError,
    check_data_dir,
    find_datasets,
    load_eval_dataset,
)
from .model_settings import (
    ResolvedModel,
    apply_folder_defaults,
    default_explicit_keys,
    resolve_model_config,
)
from .registry import MMEB_DATASETS, dataset_info, select_datasets
from .reports import build_summary, partial_note, write_reports
from .token_counts import item_token_counts

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
    #: per dataset encoded in this run: the figures written to throughput/<name>.json
    throughput: dict[str, dict[str, Any]] = field(default_factory=dict)


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


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_signature(ds: EvalDataset) -> dict[str, str]:
    """What a dataset's result came from: the parquet files' bytes and every image's size + mtime."""
    parquet = hashlib.sha256()
    for f in ds.files:
        parquet.update(f"{f.name}:{_file_digest(f)}\n".encode())
    images = hashlib.sha256()
    for path in sorted(ds.image_stamps):
        images.update(f"{path}:{ds.image_stamps[path]}\n".encode())
    return {"parquet_sha256": parquet.hexdigest(), "images": images.hexdigest()}


def batch_layout(eval_cfg: EvalConfig) -> str:
    """The batch layout, "rows-<batch_size>" or "tokens-<batch_tokens>": it keys the cache and the
    results, since a rep depends (in its last bits) on its batch's padding."""
    if eval_cfg.batch_tokens is not None:
        return f"tokens-{eval_cfg.batch_tokens}"
    return f"rows-{eval_cfg.batch_size}"


def _result_settings(fingerprint: str, eval_cfg: EvalConfig, signature: dict[str, str]) -> dict[str, Any]:
    """What a dataset's result and predictions files depend on; `top_k_predictions` shapes the
    predictions file and `ties` the ranks, so changing either re-scores (from the cache)."""
    return {
        "model_fingerprint": fingerprint,
        "batches": batch_layout(eval_cfg),
        "max_queries": eval_cfg.max_queries,
        "top_k_predictions": eval_cfg.top_k_predictions,
        "ties": eval_cfg.ties,
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
            "positive_score": s.positive_score,
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
) -> tuple[dict[str, Any], list[QueryScores], dict[str, Any]]:
    dd = dedup_examples(ds.examples)
    plans = {}
    for side, items, where in (("qry", dd.qry_items, dd.qry_where), ("tgt", dd.tgt_items, dd.tgt_where)):
        source = ItemSource(ds.name, where)
        counts = None
        if eval_cfg.batch_tokens is not None:
            max_length = getattr(getattr(model, "cfg", None), "max_length", None)
            counts = item_token_counts(model.processor, items, ds.image_root, max_length, source.describe)
        plans[side] = plan_encoding(
            items,
            eval_cfg.batch_size,
            RepCache.for_dataset(cache_dir, fingerprint, ds.name, side, batch_layout(eval_cfg)),
            image_stamps=ds.image_stamps,
            source=source,
            batch_tokens=eval_cfg.batch_tokens,
            token_counts=counts,
        )
    todo = sum(p.num_todo_items for p in plans.values())
    stats.items_encoded += todo
    stats.items_from_cache += dd.num_items - todo
    stats.distinct_items += dd.num_items
    stats.naive_slots += dd.naive_slots
    start = time.perf_counter()
    figures: dict[str, dict[str, Any]] = {side: {} for side in plans}
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
                throughput=figures[side],
            )
            for side, plan in plans.items()
        }
    stats.encode_seconds += time.perf_counter() - start
    throughput = combine_throughput(_gather([list(figures.values())], state))
    throughput["batches"] = batch_layout(eval_cfg)
    if eval_cfg.dim is not None:  # the cache holds full-size reps; a Matryoshka dim is cut here
        reps = {
            side: truncate_reps(r, eval_cfg.dim, "eval.dim") if r.numel() else r for side, r in reps.items()
        }
    scored = score_queries(reps["qry"], reps["tgt"], dd, top_k=eval_cfg.top_k_predictions, ties=eval_cfg.ties)
    info = dataset_info(ds.name)
    record = {
        **metrics_from_ranks([s.rank for s in scored]),
        "num_queries": dd.num_queries,
        "meta_task": info.meta_task,
        "split": info.split,
        "distinct_items": dd.num_items,
        "naive_slots": dd.naive_slots,
        "ties": eval_cfg.ties,
    }
    return record, scored, throughput


def combine_throughput(per_process: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """One dataset's figures from each process's `run_plan` figures (one dict per side, empty where
    nothing was encoded): items summed, seconds of the slowest process (they run side by side),
    input wait as a share of all processes' time, GPU utilisation averaged over the processes."""
    items = seconds = 0.0
    wait, util, wall = 0.0, [], 0.0
    for sides in per_process:
        own = 0.0
        for f in sides:
            if not f:
                continue
            items += f["items"]
            own += f["seconds"]
            wait += f["input_wait"] * f["seconds"]
            if f.get("gpu_util_pct") is not None:
                util.append(f["gpu_util_pct"])
        seconds += own
        wall = max(wall, own)
    return {
        "items": int(items),
        "seconds": wall,
        "items_per_s": items / wall if wall else None,
        "input_wait": wait / seconds if seconds else None,
        "gpu_util_pct": sum(util) / len(util) if util else None,
        "processes": len(per_process),
    }


def describe_throughput(t: dict[str, Any]) -> str:
    """'123.4 items/s, 12% waiting for input, GPU 80% busy' (the parts that were measured)."""
    if not t.get("items_per_s"):
        return "nothing encoded"
    parts = [f"{t['items_per_s']:.1f} items/s", f"{100 * t['input_wait']:.0f}% waiting for input"]
    if t.get("gpu_util_pct") is not None:
        parts.append(f"GPU {t['gpu_util_pct']:.0f}% busy")
    return ", ".join(parts)


def select_present(eval_cfg: EvalConfig) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The selected datasets present in `eval.data_dir`, and the absent ones as `missing` entries.

    Fails on a data_dir that is not an MMEB-eval folder, on a default selection that finds no MMEB
    dataset, and (unless `eval.skip_missing`) on any absent selected dataset, naming all of them.
    """
    found = find_datasets(eval_cfg.data_dir)
    check_data_dir(eval_cfg.data_dir, found)
    default = not eval_cfg.datasets and not eval_cfg.meta_tasks
    if default and not any(n in MMEB_DATASETS for n in found):
        raise DatasetError(
            f"eval.data_dir {eval_cfg.data_dir!r} holds no MMEB-eval dataset (found only {', '.join(found)}); "
            f"to evaluate these folders, name them: eval.datasets=[{','.join(found)}]"
        )
    names = select_datasets(eval_cfg.datasets, eval_cfg.meta_tasks, found)
    absent = [n for n in names if n not in found]
    if absent and not eval_cfg.skip_missing:
        what = "of the default selection (all 36 MMEB datasets) " if default else ""
        raise MissingDatasetError(
            f"{len(absent)} dataset(s) {what}not found under {eval_cfg.data_dir!r}: {', '.join(absent)} "
            "(set eval.skip_missing=true for a partial run that lists them as missing, or choose with "
            "eval.datasets / eval.meta_tasks)"
        )
    missing = {
        n: {
            "meta_task": dataset_info(n).meta_task,
            "split": dataset_info(n).split,
            "reason": "no parquet files in data_dir",
        }
        for n in absent
    }
    return [n for n in names if n not in missing], missing


def evaluate_model(
    model: Any,
    eval_cfg: EvalConfig,
    *,
    state: ProcessState | None = None,
    stats: EvalStats | None = None,
    model_name: str | None = None,
    model_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate `model` (`processor` + `encode`) on `eval_cfg.data_dir`; write results; return the summary.

    Every process must call this under a multi-process launch; all return the same summary.
    `model_settings` (where the model's settings came from, overrides) is recorded in the summary.
    """
    if not eval_cfg.data_dir:
        raise ConfigError("eval.data_dir is not set: point it at a local MMEB-eval folder")
    check_tie_rule(eval_cfg.ties)
    state = state or _default_state()
    stats = stats if stats is not None else EvalStats()
    out = Path(eval_cfg.output_dir)
    cache_dir = Path(eval_cfg.cache_dir) if eval_cfg.cache_dir else out / "cache"
    model.eval()
    fingerprint = model_fingerprint(model)
    present, missing = select_present(eval_cfg)
    if missing:
        logger.warning("partial run: %d dataset(s) missing: %s", len(missing), ", ".join(missing))

    records: dict[str, dict[str, Any]] = {}
    for name in present:
        # read and validate every row (and stat every image) before anything of it is encoded
        ds = load_eval_dataset(
            eval_cfg.data_dir, name, image_root=eval_cfg.image_root, max_queries=eval_cfg.max_queries
        )
        settings = _result_settings(fingerprint, eval_cfg, data_signature(ds))
        result_path = out / "datasets" / f"{name}.json"
        finished = _load_finished(result_path, settings)
        if finished is not None:
            records[name] = finished["metrics"]
            stats.datasets_reused.append(name)
            continue
        record, scored, throughput = _evaluate_dataset(
            model, ds, eval_cfg, cache_dir, fingerprint, state, stats
        )
        stats.throughput[name] = throughput
        if state.is_main_process:
            atomic_write_text(out / "predictions" / f"{name}.jsonl", _predictions_jsonl(ds, scored))
            # apart from the results: timings differ between runs, results must not
            atomic_write_json(out / "throughput" / f"{name}.json", {"dataset": name, **throughput})
            atomic_write_json(result_path, {"dataset": name, "settings": settings, "metrics": record})
            logger.info(
                "%s: %s (%s)",
                name,
                ", ".join(f"{m}={record[m]:.2f}" for m in METRICS),
                describe_throughput(throughput),
            )
        records[name] = record
        stats.datasets_evaluated.append(name)
        _barrier(state)

    summary = build_summary(
        records,
        missing,
        model=model_name or _model_name(model),
        fingerprint=fingerprint,
        config=_config_dict(model, eval_cfg),
        ties=eval_cfg.ties,
        model_settings=model_settings,
    )
    if state.is_main_process:
        write_reports(summary, out)
        if summary["partial"]:
            logger.warning("%s", partial_note(summary))
    _barrier(state)
    return summary


def load_model_for_eval(model_cfg: Any, explicit: set[str] | None = None) -> tuple[Any, ResolvedModel]:
    """Open the model with the settings that should run (`resolve_model_config`): a saved folder's own
    settings unless a key is in `explicit` (dotted or bare model keys; None: the keys that differ
    from the ModelConfig defaults). Returns the model and the resolution (what was overridden)."""
    from ..model import EmbeddingModel

    keys = default_explicit_keys(model_cfg) if explicit is None else explicit
    resolved = apply_folder_defaults(resolve_model_config(model_cfg, keys), keys)
    return EmbeddingModel.from_config(resolved.cfg), resolved


def run_evaluation(cfg: Any, explicit: set[str] | None = None) -> dict[str, Any]:
    """Entry point behind evaluate.py: load the model from `cfg.model`, evaluate, print the table.

    `explicit`: the dotted keys set by the YAML file or the command line (`ParsedCLI.explicit`); a saved
    folder's settings yield only to those. The `config.yaml` written beside the results holds the
    model settings that ran, and summary.json's `model_settings` lists the overrides.
    """
    import torch
    from accelerate import PartialState

    from ..config import save_config
    from .reports import format_table

    state = PartialState(cpu=not torch.cuda.is_available())
    model, resolved = load_model_for_eval(cfg.model, explicit)
    model = model.to(state.device)
    ran = dataclasses.replace(cfg, model=getattr(model, "cfg", resolved.cfg))
    if state.is_main_process:
        logger.info("%s", resolved.describe())
        save_config(ran, Path(cfg.eval.output_dir) / "config.yaml")
    summary = evaluate_model(model, cfg.eval, state=state, model_settings=resolved.report())
    if state.is_main_process:
        print(resolved.describe())
        print(format_table(summary))
    return summary


__all__ = [
    "EvalStats",
    "data_signature",
    "evaluate_model",
    "load_model_for_eval",
    "run_evaluation",
    "select_present",
]
