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
import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic_files import atomic_write_json, atomic_write_text
from ..config import ConfigError, EvalConfig
from ..distributed import ProcessState, barrier, process_state
from ..encoding import (
    DedupedDataset,
    EncodeSchedule,
    ItemSource,
    RepCache,
    dedup_examples,
    describe_throughput,
    load_embedding_model,
    model_fingerprint,
)
from ..outputs import OutputClaim, claim_output
from .metrics import METRICS, QueryScores, check_tie_rule, metrics_from_ranks, score_queries
from .mmeb_eval import (
    DatasetError,
    EvalDataset,
    MissingDatasetError,
    check_data_dir,
    find_datasets,
    load_eval_dataset,
)
from .registry import MMEB_DATASETS, dataset_info, select_datasets
from .reports import build_summary, print_eval_summary, write_reports
from .result_settings import batch_layout, data_signature, load_finished, result_settings
from .side_encoding import encode_sides, schedule_side
from .v2_runner import evaluate_v2

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
    return {"model": model_part, "eval": v1_settings(eval_cfg)}


def v1_settings(eval_cfg: EvalConfig) -> dict[str, Any]:
    """The eval settings a V1 report records: those a V1 run reads (the MMEB-V2 keys left out)."""
    v2_only = {f.name for f in dataclasses.fields(eval_cfg) if f.metadata.get("applies_when")}
    return {k: v for k, v in dataclasses.asdict(eval_cfg).items() if k not in v2_only | {"benchmark"}}


def _schedules(
    model: Any, ds: EvalDataset, dd: DedupedDataset, eval_cfg: EvalConfig, cache_dir: Path, fingerprint: str
) -> dict[str, EncodeSchedule]:
    """The encode schedule of each side (queries, candidates) of a dataset, through its cache."""
    return {
        side: schedule_side(
            model,
            items,
            ItemSource(ds.name, where),
            image_root=ds.image_root,
            image_stamps=ds.image_stamps,
            cache=RepCache.for_dataset(cache_dir, fingerprint, ds.name, side, batch_layout(eval_cfg)),
            eval_cfg=eval_cfg,
        )
        for side, items, where in (("qry", dd.qry_items, dd.qry_where), ("tgt", dd.tgt_items, dd.tgt_where))
    }


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
    schedules = _schedules(model, ds, dd, eval_cfg, cache_dir, fingerprint)
    todo = sum(s.num_todo_items for s in schedules.values())
    stats.items_encoded += todo
    stats.items_from_cache += dd.num_items - todo
    stats.distinct_items += dd.num_items
    stats.naive_slots += dd.naive_slots
    reps, throughput = encode_sides(model, ds.name, ds.image_root, schedules, eval_cfg, state, stats)
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


def _evaluate_v2(
    model: Any,
    eval_cfg: EvalConfig,
    state: ProcessState,
    stats: EvalStats,
    model_name: str,
    model_settings: dict[str, Any] | None,
) -> dict[str, Any]:
    """The MMEB-V2 run, its image block evaluated by `evaluate_model` itself."""
    return evaluate_v2(
        model,
        eval_cfg,
        state=state,
        stats=stats,
        fingerprint=model_fingerprint(model),
        # <output_dir>/image lies in the folder claimed for this model already
        evaluate_images=functools.partial(evaluate_model, overwrite=True),
        model_name=model_name,
        model_settings=model_settings,
        config={**_config_dict(model, eval_cfg), "eval": dataclasses.asdict(eval_cfg)},
    )


def evaluate_model(
    model: Any,
    eval_cfg: EvalConfig,
    *,
    state: ProcessState | None = None,
    stats: EvalStats | None = None,
    model_name: str | None = None,
    model_settings: dict[str, Any] | None = None,
    overwrite: bool | None = None,
) -> dict[str, Any]:
    """Evaluate `model` (`processor` + `encode`) on `eval_cfg.data_dir` (or, with `eval.benchmark:
    mmeb_v2`, on the MMEB-V2 tasks: `v2_runner`); write results; return the summary.

    Every process must call this under a multi-process launch; all return the same summary.
    `model_settings` (where the model's settings came from, overrides) is recorded in the summary.
    `eval.output_dir` must be new, or hold this model's results (`claim_eval_folder`); `overwrite`
    writes over another model's (None: the `--overwrite` flag).
    """
    check_tie_rule(eval_cfg.ties)
    state = state or process_state()
    stats = stats if stats is not None else EvalStats()
    if eval_cfg.benchmark != "mmeb_v2" and not eval_cfg.data_dir:
        raise ConfigError("eval.data_dir is not set: point it at a local MMEB-eval folder")
    model.eval()
    fingerprint = model_fingerprint(model)
    name = model_name or _model_name(model)
    with claim_eval_folder(eval_cfg, fingerprint, name, state, overwrite) as claim:
        claim.record()
        if eval_cfg.benchmark == "mmeb_v2":
            return _evaluate_v2(model, eval_cfg, state, stats, name, model_settings)
        return _evaluate_v1(model, eval_cfg, state, stats, name, model_settings, fingerprint)


def claim_eval_folder(
    eval_cfg: EvalConfig, fingerprint: str, model_name: str, state: ProcessState, overwrite: bool | None
) -> OutputClaim:
    """Claim `eval.output_dir` for this model: the same model's folder is reused (its finished
    datasets and cache), another model's is refused unless `overwrite`."""
    out = Path(eval_cfg.output_dir)
    return claim_output(
        out,
        "eval",
        {"model": fingerprint},
        details={
            "model": f"{model_name} [{fingerprint[:12]}]",
            "data": eval_cfg.v2_root or eval_cfg.data_dir,
        },
        key="eval.output_dir",
        overwrite=overwrite,
        main=state.is_main_process,
        continue_hint=f"finished datasets and cached item reps in {out} are kept; run the same command again to continue",
    )


def _evaluate_v1(
    model: Any,
    eval_cfg: EvalConfig,
    state: ProcessState,
    stats: EvalStats,
    model_name: str,
    model_settings: dict[str, Any] | None,
    fingerprint: str,
) -> dict[str, Any]:
    """The MMEB-V1 run of `evaluate_model` in its claimed folder."""
    out = Path(eval_cfg.output_dir)
    cache_dir = Path(eval_cfg.cache_dir) if eval_cfg.cache_dir else out / "cache"
    present, missing = select_present(eval_cfg)
    if missing:  # named once, in the reports
        logger.warning("partial run: %d selected dataset(s) missing; the reports list them", len(missing))

    records: dict[str, dict[str, Any]] = {}
    for name in present:
        # read and validate every row (and stat every image) before anything of it is encoded
        ds = load_eval_dataset(
            eval_cfg.data_dir, name, image_root=eval_cfg.image_root, max_queries=eval_cfg.max_queries
        )
        settings = result_settings(fingerprint, eval_cfg, data_signature(ds))
        result_path = out / "datasets" / f"{name}.json"
        finished = load_finished(result_path, settings)
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
        barrier(state)

    summary = build_summary(
        records,
        missing,
        model=model_name,
        fingerprint=fingerprint,
        config=_config_dict(model, eval_cfg),
        ties=eval_cfg.ties,
        model_settings=model_settings,
    )
    if state.is_main_process:
        write_reports(summary, out)
    barrier(state)
    return summary


def run_evaluation(cfg: Any, explicit: set[str] | None = None) -> dict[str, Any]:
    """Entry point behind evaluate.py: load the model from `cfg.model`, evaluate, print the table.

    `explicit`: the dotted keys set by the YAML file or the command line (`ParsedCLI.explicit`); a saved
    folder's settings yield only to those. The `config.yaml` written beside the results holds the
    model settings that ran, and summary.json's `model_settings` lists the overrides.
    """
    from ..config import save_config
    from .reports import format_table
    from .v2_reports import format_v2_table

    state = process_state(join_launch=True)
    model, resolved = load_embedding_model(cfg.model, explicit, state.device)
    ran = dataclasses.replace(cfg, model=getattr(model, "cfg", resolved.cfg))
    if state.is_main_process:
        logger.info("%s", resolved.describe())
    summary = evaluate_model(model, cfg.eval, state=state, model_settings=resolved.report())
    if state.is_main_process:
        save_config(ran, Path(cfg.eval.output_dir) / "config.yaml")  # in the folder claimed for this model
        print(resolved.describe())
        print(format_v2_table(summary) if cfg.eval.benchmark == "mmeb_v2" else format_table(summary))
        print_eval_summary(summary, Path(cfg.eval.output_dir))
    return summary


__all__ = [
    "EvalStats",
    "evaluate_model",
    "run_evaluation",
    "select_present",
]
