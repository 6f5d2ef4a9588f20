"""The MMEB-V2 runner: the 36 image tasks as V1 scores them, the video and visual-document tasks here.

Per video or document task: read its `TaskData` (mmeb_v2 readers), build its distinct items
(`v2_items`), encode both sides through the rep cache with the V1 runner's sharded, resumable encoding
(`side_encoding`), rank each query over its pool (its own list, the task's distinct candidates, or the
whole page corpus, encoded once per dataset) and score every metric under the chosen graded-NDCG rule,
and under the other where they differ. The data version is part of the cache folder and of the result
settings, so reps or results of other data are never reused. The image block is the V1 evaluator run
on `eval.data_dir` into `<output_dir>/image/`.

Output folder (`eval.output_dir`), beside the V1 layout:
    datasets/<task>.json                   a task's result and the settings it came from (written last)
    scores/<modality>/<task>_score.json    the reference's score file (its key names, chosen rule)
    scores/<modality>/<task>_score_<rule>-rule.json  the other rule's file, where the rules differ
    predictions/<task>.jsonl               per query: ranked candidate names (top k), labels, grades
    summary.json / .md / .csv, datasets.csv, submission.json   the 78-task report (`v2_reports`)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic_files import atomic_write_json, atomic_write_text
from ..config import EvalConfig
from ..distributed import ProcessState, barrier
from ..encoding import ItemSource, RepCache, item_key
from ..errors import DataError, DataNotFoundError
from ..mmeb_v2.locate import Located, read_task
from ..mmeb_v2.metrics import NDCG_RULES
from ..mmeb_v2.ranking import TaskScores, score_task
from ..mmeb_v2.records import TaskData
from ..mmeb_v2.tasks import IMAGE, TASKS
from ..mmeb_v2.versions import DataVersionError
from .mmeb_eval import MissingDatasetError
from .result_settings import batch_layout, file_digest, load_finished, scoring_settings
from .side_encoding import encode_sides, schedule_side
from .v2_data import locate_v2
from .v2_items import TaskItems, task_items
from .v2_reports import build_v2_summary, image_block_records, partial_line, write_v2_reports

logger = logging.getLogger(__name__)


def cache_name(data: TaskData) -> str:
    """The task's folder in the rep cache: its name and data version (as a safe folder name)."""
    return f"mmeb_v2/{data.task.name}/{re.sub(r'[^A-Za-z0-9_.-]+', '_', data.data_version)}"


def _items_digest(items: TaskItems) -> str:
    h = hashlib.sha256()
    for it in (*items.qry_items, *items.tgt_items):
        stamps = [items.stamps.get(f, "") for f in it.video]
        h.update(item_key(it, items.stamps.get(it.image, ""), stamps).encode() + b"\n")
    return h.hexdigest()


def task_settings(fingerprint: str, eval_cfg: EvalConfig, data: TaskData, items: TaskItems) -> dict[str, Any]:
    """What a task's result depends on: model, batch layout, scoring settings, data version, the
    annotation files' bytes and every item (texts, frame and page files with their stamps)."""
    files = hashlib.sha256()
    for f in data.files:
        files.update(f"{f.name}:{file_digest(f)}\n".encode())
    return {
        **scoring_settings(fingerprint, eval_cfg),
        "ndcg_rule": eval_cfg.ndcg_rule,
        "num_frames": eval_cfg.num_frames,
        "data_version": data.data_version,
        "annotations_sha256": files.hexdigest(),
        "items_sha256": _items_digest(items),
    }


def _encode_task(
    model: Any,
    data: TaskData,
    items: TaskItems,
    ctx: RunContext,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Query reps per query and candidate reps per candidate (both float32), and the throughput."""
    name = cache_name(data)
    sides = {"qry": (items.qry_items, items.qry_where), "tgt": (items.tgt_items, items.tgt_where)}
    schedules = {
        side: schedule_side(
            model,
            side_items,
            ItemSource(data.task.name, where),
            image_root=Path("/"),
            image_stamps=items.stamps,
            cache=RepCache.for_dataset(
                ctx.cache_dir, ctx.fingerprint, name, side, batch_layout(ctx.eval_cfg)
            ),
            eval_cfg=ctx.eval_cfg,
        )
        for side, (side_items, where) in sides.items()
    }
    todo = sum(s.num_todo_items for s in schedules.values())
    ctx.stats.items_encoded += todo
    ctx.stats.items_from_cache += items.num_items - todo
    ctx.stats.distinct_items += items.num_items
    reps, throughput = encode_sides(
        model, data.task.name, Path("/"), schedules, ctx.eval_cfg, ctx.state, ctx.stats
    )
    qry = reps["qry"].numpy()[items.index("qry")]
    tgt = reps["tgt"].numpy()[items.index("tgt")]
    return qry, tgt, throughput


def _record(data: TaskData, scored: TaskScores, items: TaskItems, num_data: int) -> dict[str, Any]:
    metric = data.task.metric
    other = scored.other_rule
    return {
        "modality": data.task.modality,
        "meta_task": data.task.meta_task,
        "metric": metric,
        "score": float(scored.scores[metric]) * 100.0,
        "ndcg_rule": scored.ndcg_rule,
        "other_rule_score": float(other[metric]) * 100.0 if other is not None else None,
        "scores": scored.scores,
        "other_rule_scores": other,
        "num_queries": len(data.queries),
        "num_data": num_data,
        "distinct_items": items.num_items,
        "naive_slots": len(data.queries) + sum(len(data.pool(q)) for q in data.queries),
        "data_version": data.data_version,
        "layout": data.layout,
        "counts": dict(data.counts),
    }


def _predictions_jsonl(data: TaskData, scored: TaskScores, top_k: int) -> str:
    lines = []
    for q, ranked in zip(data.queries, scored.rankings):
        grades = list(q.relevant.values())
        row = {
            "row": q.row,
            "prediction": list(ranked[:top_k]),
            "label": list(q.relevant),
            "rel_scores": grades if len(set(grades)) > 1 else None,
        }
        lines.append(json.dumps(row, ensure_ascii=False, default=str))
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class RunContext:
    """What every task of one run shares."""

    eval_cfg: EvalConfig
    out: Path
    cache_dir: Path
    fingerprint: str
    state: ProcessState
    stats: Any


def _write_task(ctx: RunContext, data: TaskData, scored: TaskScores, record: dict, settings: dict) -> None:
    name, folder = data.task.name, ctx.out / "scores" / data.task.modality
    atomic_write_json(folder / f"{name}_score.json", scored.scores)
    if scored.other_rule is not None:
        other = next(r for r in NDCG_RULES if r != record["ndcg_rule"])
        atomic_write_json(folder / f"{name}_score_{other}-rule.json", scored.other_rule)
    preds = _predictions_jsonl(data, scored, ctx.eval_cfg.top_k_predictions)
    atomic_write_text(ctx.out / "predictions" / f"{name}.jsonl", preds)
    atomic_write_json(
        ctx.out / "datasets" / f"{name}.json", {"dataset": name, "settings": settings, "metrics": record}
    )


def _read_main_first(found: Located, ctx: RunContext) -> TaskData:
    """Read a task on the main process first, so that page images written from a corpus are written
    once, and every process then stamps the same files."""
    cfg = ctx.eval_cfg
    labels = (
        class_list(cfg.v2_class_lists[found.task.name]) if found.task.name in cfg.v2_class_lists else None
    )
    data = (
        read_task(found, allow_old=cfg.allow_old_data, label_pool=labels)
        if ctx.state.is_main_process
        else None
    )
    barrier(ctx.state)
    return data if data is not None else read_task(found, allow_old=cfg.allow_old_data, label_pool=labels)


def class_list(path: str) -> list[str]:
    """The class labels of a text file, one a line (blank lines skipped); an unreadable file is named."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataNotFoundError(f"eval.v2_class_lists: cannot read {path!r}: {exc}") from exc
    labels = [line.strip() for line in lines if line.strip()]
    if not labels:
        raise DataError(f"eval.v2_class_lists: {path!r} holds no label")
    return labels


def evaluate_task(model: Any, found: Located, ctx: RunContext) -> dict[str, Any]:
    """Read, encode, rank and score one video or document task (reusing a finished result)."""
    cfg = ctx.eval_cfg
    data = _read_main_first(found, ctx)
    num_data = len(data.queries)
    if cfg.max_queries is not None:
        data.queries = data.queries[: cfg.max_queries]
    items = task_items(data, cfg.num_frames)
    settings = task_settings(ctx.fingerprint, cfg, data, items)
    finished = load_finished(ctx.out / "datasets" / f"{data.task.name}.json", settings)
    if finished is not None:
        ctx.stats.datasets_reused.append(data.task.name)
        return finished["metrics"]
    qry, tgt, throughput = _encode_task(model, data, items, ctx)
    scored = score_task(data, qry, tgt, ties=cfg.ties, ndcg_rule=cfg.ndcg_rule, num_data=num_data)
    record = _record(data, scored, items, num_data)
    ctx.stats.naive_slots += record["naive_slots"]
    ctx.stats.throughput[data.task.name] = throughput
    if ctx.state.is_main_process:
        _write_task(ctx, data, scored, record, settings)
        logger.info("%s: %s = %.2f", data.task.name, record["metric"], record["score"])
    ctx.stats.datasets_evaluated.append(data.task.name)
    barrier(ctx.state)
    return record


def _missing(found: list[Located], eval_cfg: EvalConfig) -> dict[str, dict[str, Any]]:
    """Tasks that are not ready, as `missing` entries; fails the run unless a partial run is asked
    for, and always on data of an older version (found, but refused: never skipped quietly)."""
    old = [f for f in found if f.annotations is not None and not f.data_version and f.problems]
    if old:
        raise DataVersionError("; ".join(p for f in old for p in f.problems if "media not found" not in p))
    absent = {f.task.name: f for f in found if not f.ready}
    if absent and not eval_cfg.skip_missing:
        lines = "; ".join(f"{n}: {', '.join(f.problems)}" for n, f in absent.items())
        raise MissingDatasetError(
            f"{len(absent)} MMEB-V2 task(s) not ready: {lines} (`vlm2vec data` lists what to download; "
            "set eval.skip_missing=true for a partial run that lists them as missing)"
        )
    return {
        n: {"modality": f.task.modality, "meta_task": f.task.meta_task, "reason": "; ".join(f.problems)}
        for n, f in absent.items()
    }


def evaluate_v2(
    model: Any,
    eval_cfg: EvalConfig,
    *,
    state: ProcessState,
    stats: Any,
    fingerprint: str,
    evaluate_images: Callable[..., dict[str, Any]],
    model_name: str,
    model_settings: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate the selected MMEB-V2 tasks; write the 78-task report; return its summary.

    `evaluate_images(model, eval_cfg, state=, stats=, model_name=, model_settings=)` is the V1
    evaluator, run on the image tasks present in `eval.data_dir`."""
    out = Path(eval_cfg.output_dir)
    cache_dir = Path(eval_cfg.cache_dir) if eval_cfg.cache_dir else out / "cache"
    found = locate_v2(eval_cfg)
    missing = _missing(found, eval_cfg)
    ready = [f for f in found if f.ready]
    images = [f.task.name for f in ready if f.task.modality == IMAGE]
    records: dict[str, dict[str, Any]] = {}
    if images:
        v1_cfg = dataclasses.replace(
            EvalConfig(),
            **{k: getattr(eval_cfg, k) for k in _V1_KEYS},
            datasets=images,
            output_dir=str(out / IMAGE),
            cache_dir=str(cache_dir),
            skip_missing=True,
        )
        v1 = evaluate_images(model, v1_cfg, state=state, stats=stats, model_name=model_name)
        records.update(image_block_records(v1, out / IMAGE))
        missing.update(
            {
                n: {"modality": IMAGE, "meta_task": TASKS[n].meta_task, "reason": m["reason"]}
                for n, m in v1["missing"].items()
            }
        )
    ctx = RunContext(eval_cfg, out, cache_dir, fingerprint, state, stats)
    for f in ready:
        if f.task.modality != IMAGE:
            records[f.task.name] = evaluate_task(model, f, ctx)
    summary = build_v2_summary(
        records,
        missing,
        eval_cfg,
        model=model_name,
        fingerprint=fingerprint,
        model_settings=model_settings,
        config=config,
    )
    if state.is_main_process:
        write_v2_reports(summary, out, eval_cfg.fixed_page_names)
        if summary["partial"]:
            logger.warning("%s", partial_line(summary))
    barrier(state)
    return summary


#: the V1 settings the image block inherits from the V2 run
_V1_KEYS = (
    "data_dir",
    "image_root",
    "batch_size",
    "batch_tokens",
    "max_queries",
    "top_k_predictions",
    "ties",
    "num_workers",
    "cache_chunk_items",
    "dim",
)
