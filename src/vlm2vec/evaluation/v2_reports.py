"""The MMEB-V2 report: per dataset, per meta-task, per modality (36/18/24) and overall (78), with the
published rows beside ours, in every format a V1 run writes plus the leaderboard's submission JSON.

Every aggregate is the plain mean of its datasets' headline scores (`mmeb_v2.aggregate`); a mean over
fewer datasets than its group holds says so (n/of) in the table, summary.md, summary.json and both
CSVs, so a partial run is never mistaken for a full one. The graded-NDCG rule is named in every
report, and a dataset whose score differs under the other rule shows both.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

from ..atomic_files import atomic_write_json, atomic_write_text
from ..config import EvalConfig
from ..mmeb_v2.aggregate import Mean, aggregate, submission
from ..mmeb_v2.metrics import query_metrics, reference_score_dict
from ..mmeb_v2.published import CURRENT, PAPER, published_rows
from ..mmeb_v2.tasks import META_TASKS, MODALITIES, TASKS

_PREFIX = {"image": "I", "video": "V", "visdoc": "VD"}
#: report column -> (summary group, key); "All" is the 78-task mean
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("All", "overall", ""),
    *((m.capitalize() if m != "visdoc" else "VisDoc", "modalities", m) for m in MODALITIES),
    *((f"{_PREFIX[m]}-{t}", "meta_tasks", f"{m}/{t}") for m in MODALITIES for t in META_TASKS[m]),
)
RULE_NOTES = {
    "reference": "graded NDCG under the reference's rule (its label/grade pairing, as the leaderboard)",
    "correct": "graded NDCG under the correct rule (each page its own grade; differs from the leaderboard)",
}


def _mean_dict(mean: Mean) -> dict[str, Any]:
    return {"value": mean.value, "n": mean.n, "of": mean.of, "partial": mean.partial}


def image_score_dict(ranks: list[int]) -> dict[str, float | int]:
    """The reference's score file of a single-positive task from the positives' ranks."""
    per_query = [query_metrics([*range(r - 1), "positive"], {"positive": 1.0}) for r in ranks]
    return reference_score_dict(per_query, len(ranks))


def image_block_records(v1_summary: dict[str, Any], image_out: Path) -> dict[str, dict[str, Any]]:
    """The V1 results of the image tasks as V2 records (hit@1 = precision@1), with score dicts in the
    reference's key names rebuilt from the ranks in the V1 predictions files."""
    out = {}
    for name, rec in v1_summary["datasets"].items():
        if name not in TASKS:
            continue
        lines = (image_out / "predictions" / f"{name}.jsonl").read_text().splitlines()
        ranks = [json.loads(line)["rank"] for line in lines if line.strip()]
        out[name] = {
            "modality": "image",
            "meta_task": TASKS[name].meta_task,
            "metric": "hit@1",
            "score": rec["precision@1"],
            "ndcg_rule": None,
            "other_rule_score": None,
            "scores": image_score_dict(ranks),
            "other_rule_scores": None,
            "num_queries": rec["num_queries"],
            "data_version": "TIGER-Lab/MMEB-eval",
        }
    return out


def _published(data: str) -> list[dict[str, Any]]:
    rows = []
    for row in published_rows(data):
        entry = dataclasses.asdict(row)
        entry["meta_tasks"] = {f"{mod}/{m}": v for (mod, m), v in row.meta_tasks.items()}
        rows.append(entry)
    return rows


def build_v2_summary(
    records: dict[str, dict[str, Any]],
    missing: dict[str, dict[str, Any]],
    eval_cfg: EvalConfig,
    *,
    model: str = "",
    fingerprint: str = "",
    model_settings: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Summary dict of a V2 run: records in the 78-task order, aggregates with their coverage."""
    ordered = {n: records[n] for n in TASKS if n in records}
    agg = aggregate({n: r["score"] for n, r in ordered.items()})
    differ = {
        n: {r["ndcg_rule"]: r["score"], _other(r["ndcg_rule"]): r["other_rule_score"]}
        for n, r in ordered.items()
        if r.get("other_rule_score") is not None and r["other_rule_score"] != r["score"]
    }
    return {
        "benchmark": "mmeb_v2",
        "datasets": ordered,
        "missing": {n: missing[n] for n in TASKS if n in missing},
        "meta_tasks": {f"{mod}/{m}": _mean_dict(v) for (mod, m), v in agg.meta_tasks.items()},
        "modalities": {m: _mean_dict(v) for m, v in agg.modalities.items()},
        "overall": _mean_dict(agg.overall),
        "coverage": f"{agg.overall.n}/{agg.overall.of}",
        "partial": agg.partial,
        "metric": {m: ("ndcg_linear@5" if m == "visdoc" else "hit@1") for m in MODALITIES},
        "ndcg_rule": eval_cfg.ndcg_rule,
        "rules_differ": differ,
        "ties": eval_cfg.ties,
        "num_frames": eval_cfg.num_frames,
        "published": _published(PAPER if eval_cfg.allow_old_data else CURRENT),
        "model": model,
        "model_fingerprint": fingerprint,
        "model_settings": dict(model_settings or {}),
        "config": dict(config or {"eval": dataclasses.asdict(eval_cfg)}),
    }


def _other(rule: str) -> str:
    return "correct" if rule == "reference" else "reference"


def _cell(mean: dict[str, Any] | float | None) -> str:
    if isinstance(mean, dict):
        if mean["value"] is None:
            return f"n/a (0/{mean['of']})"
        text = f"{mean['value']:.1f}"
        return f"{text} ({mean['n']}/{mean['of']})" if mean["partial"] else text
    return "-" if mean is None else f"{mean:.1f}"


def _rows(summary: dict[str, Any]) -> list[tuple[str, list[str]]]:
    ours = [_cell(summary[group] if not key else summary[group][key]) for _, group, key in COLUMNS]
    rows = [(summary["model"] or "this run", ours)]
    for pub in summary["published"]:
        cells = [_cell(pub[group] if not key else pub[group].get(key)) for _, group, key in COLUMNS]
        rows.append((f"{pub['model']} (published)", cells))
    return rows


def partial_line(summary: dict[str, Any]) -> str:
    """One line: full or partial (n/78), and how many are missing."""
    if not summary["partial"]:
        return f"MMEB-V2: all {summary['coverage']} tasks"
    scored, missing = len(summary["datasets"]), len(summary["missing"])
    unasked = len(TASKS) - scored - missing
    return (
        f"PARTIAL MMEB-V2 run: {summary['coverage']} tasks scored, {missing} missing"
        + (f", {unasked} not asked for" if unasked else "")
        + "; every mean says over how many datasets it runs"
    )


def format_v2_table(summary: dict[str, Any]) -> str:
    """Aggregates of ours beside the published rows, then per dataset (both rules where they differ)."""
    heads = [c for c, _, _ in COLUMNS]
    rows = _rows(summary)
    width = max(len(n) for n, _ in rows)
    cw = [max(len(h), *(len(r[1][i]) for r in rows)) for i, h in enumerate(heads)]
    lines = [partial_line(summary), RULE_NOTES[summary["ndcg_rule"]]]
    lines.append(" ".join([" " * width, *(h.rjust(w) for h, w in zip(heads, cw))]))
    lines += [" ".join([n.ljust(width), *(c.rjust(w) for c, w in zip(cells, cw))]) for n, cells in rows]
    lines.append("per dataset (image/video hit@1, visdoc ndcg_linear@5, x100):")
    for name, rec in summary["datasets"].items():
        both = summary["rules_differ"].get(name)
        rules = f"  [{', '.join(f'{k} rule {v:.1f}' for k, v in both.items())}]" if both else ""
        pub = [p["datasets"].get(name) for p in summary["published"]]
        known = " | ".join(
            f"{p['model']} {v:.1f}" for p, v in zip(summary["published"], pub) if v is not None
        )
        lines.append(f"  {name:<44} {rec['score']:6.1f}{rules}" + (f"   published: {known}" if known else ""))
    if summary["missing"]:
        lines.append(f"missing ({len(summary['missing'])}): {', '.join(summary['missing'])}")
    return "\n".join(lines)


def format_v2_markdown(summary: dict[str, Any]) -> str:
    heads = [c for c, _, _ in COLUMNS]
    lines = [f"# MMEB-V2: {summary['model']}", "", f"**{partial_line(summary)}**", ""]
    lines += [
        f"{RULE_NOTES[summary['ndcg_rule']]}; ties: {summary['ties']}; frames per video: {summary['num_frames']}",
        "",
    ]
    lines += ["| model | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    lines += [f"| {n} | " + " | ".join(cells) + " |" for n, cells in _rows(summary)]
    lines += [
        "",
        "| dataset | modality | meta-task | metric | score | other NDCG rule | published |",
        "|---" * 7 + "|",
    ]
    for name, rec in summary["datasets"].items():
        both = summary["rules_differ"].get(name)
        other = f"{both[_other(rec['ndcg_rule'])]:.1f} ({_other(rec['ndcg_rule'])})" if both else ""
        pub = ", ".join(
            f"{p['model']} {p['datasets'][name]:.1f}" for p in summary["published"] if name in p["datasets"]
        )
        lines.append(
            f"| {name} | {rec['modality']} | {rec['meta_task']} | {rec['metric']} | {rec['score']:.1f} | {other} | {pub} |"
        )
    notes = [(n, r["counts"]) for n, r in summary["datasets"].items() if r.get("counts")]
    if notes:
        lines += ["", "Data rules applied (counted, data never changed):", ""]
        lines += [f"- {n}: " + "; ".join(f"{k}: {v}" for k, v in c.items()) for n, c in notes]
    if summary["missing"]:
        lines += ["", f"Missing ({len(summary['missing'])}/78):", ""]
        lines += [f"- {n}: {m['reason']}" for n, m in summary["missing"].items()]
    return "\n".join(lines) + "\n"


def _csv(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def format_v2_csv(summary: dict[str, Any]) -> str:
    """One row per model (ours first); cells are means, a partial mean as `value (n/of)`."""
    heads = [c for c, _, _ in COLUMNS]
    return _csv(
        [["model", "coverage", *heads]]
        + [[n, summary["coverage"] if i == 0 else "78/78", *c] for i, (n, c) in enumerate(_rows(summary))]
    )


def format_v2_datasets_csv(summary: dict[str, Any]) -> str:
    models = [p["model"] for p in summary["published"]]
    rows = [
        [
            "dataset",
            "modality",
            "meta_task",
            "metric",
            "score",
            "ndcg_rule",
            "other_rule_score",
            "num_queries",
            "data_version",
            "status",
            *models,
        ]
    ]
    for name, task in TASKS.items():
        rec = summary["datasets"].get(name)
        pub = [p["datasets"].get(name, "") for p in summary["published"]]
        if rec is None:
            rows.append(
                [name, task.modality, task.meta_task, task.metric, "", "", "", "", "", "missing", *pub]
            )
            continue
        other = summary["rules_differ"].get(name, {}).get(_other(rec["ndcg_rule"] or ""), "")
        rows.append([name, task.modality, task.meta_task, rec["metric"], rec["score"], rec["ndcg_rule"] or "", other,
                     rec["num_queries"], rec["data_version"], "scored", *pub])  # fmt: skip
    return _csv(rows)


def write_v2_reports(
    summary: dict[str, Any], out_dir: str | Path, fixed_page_names: bool = False
) -> dict[str, Path]:
    """summary.json/.md/.csv, datasets.csv and the leaderboard's submission.json, each atomically."""
    out = Path(out_dir)
    scores = {n: r["scores"] for n, r in summary["datasets"].items()}
    sub = submission(scores, {"model_name": summary["model"] or "model"}, fixed_page_names=fixed_page_names)
    return {
        "json": atomic_write_json(out / "summary.json", summary),
        "md": atomic_write_text(out / "summary.md", format_v2_markdown(summary)),
        "csv": atomic_write_text(out / "summary.csv", format_v2_csv(summary)),
        "datasets_csv": atomic_write_text(out / "datasets.csv", format_v2_datasets_csv(summary)),
        "submission": atomic_write_json(out / "submission.json", sub),
    }
