"""Summaries and reports: aggregates over datasets, summary.json / .md / .csv and a meta-task chart.

Aggregates follow the paper: the score of a meta-task, of IND, of OOD and overall is the mean of
Precision@1 over the *datasets* in it (dataset-weighted, not a mean of meta-task means). Datasets
outside MMEB (meta-task `other`) are reported but excluded; missing datasets are listed under
`missing` in every report, never counted as zero. A group with no evaluated dataset has the score
None (null). Every mean says over how many of the group's MMEB datasets it runs (`coverage`), and a
mean over fewer than all of them is marked partial, in summary.json and in every table: a partial
"overall" is not comparable with the published one. The tie rule (`ties`) is recorded beside them.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ..atomic_files import atomic_path, atomic_write_json, atomic_write_text
from ..outputs import print_summary
from .metrics import METRICS
from .registry import META_TASKS, MMEB_DATASETS, PUBLISHED_RESULTS, SHORT_NAMES

MAIN_METRIC = "precision@1"
GROUPS: tuple[str, ...] = (*META_TASKS, "IND", "OOD", "overall")
_HEADERS = {**{t: SHORT_NAMES[t] for t in META_TASKS}, "IND": "IND", "OOD": "OOD", "overall": "Overall"}
GROUP_HEADERS = _HEADERS  # column titles of the groups, for other reports


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def build_summary(
    datasets: dict[str, dict[str, Any]],
    missing: dict[str, dict[str, Any]] | None = None,
    *,
    model: str = "",
    fingerprint: str = "",
    config: dict[str, Any] | None = None,
    ties: str = "reference",
    model_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Summary dict from per-dataset rows (metrics in %, `meta_task`, `split`, `num_queries`)."""

    rows = [r for r in datasets.values() if r["meta_task"] in META_TASKS]
    members = {
        g: [r[MAIN_METRIC] for r in rows if g == "overall" or g in (r["meta_task"], r["split"])]
        for g in GROUPS
    }
    scores = {g: _mean(members[g]) for g in GROUPS}
    full = _registry_sizes()
    coverage = {
        g: {"datasets": len(members[g]), "of": full[g], "partial": len(members[g]) < full[g]} for g in GROUPS
    }
    return {
        "datasets": datasets,
        "missing": dict(missing or {}),
        "meta_tasks": {t: scores[t] for t in META_TASKS},
        "IND": scores["IND"],
        "OOD": scores["OOD"],
        "overall": scores["overall"],
        "num_datasets": {g: len(members[g]) for g in GROUPS},
        "coverage": coverage,
        "partial": coverage["overall"]["partial"],
        "metric": MAIN_METRIC,
        "ties": ties,
        "model": model,
        "model_fingerprint": fingerprint,
        "model_settings": dict(model_settings or {}),
        "config": dict(config or {}),
    }


TIE_NOTES = {
    "reference": "a tie with the positive counts as a hit, as in the reference evaluator (argmax == 0)",
    "strict": "a tie with the positive counts as a miss (stricter than the published numbers)",
}


def partial_note(summary: dict[str, Any]) -> str:
    """'' for a full run; otherwise one sentence: how many datasets the means run over and how many
    are missing (each report lists the missing ones once, by name, in its own section)."""
    if not summary.get("partial"):
        return ""
    cov = summary["coverage"]["overall"]
    text = f"PARTIAL: means over {cov['datasets']} of the {cov['of']} MMEB datasets, not comparable with the published rows"
    if summary["missing"]:
        text += f"; {len(summary['missing'])} missing"
    return text + "."


def _cell(summary: dict[str, Any], group: str, value: float | None) -> str:
    """Our score for a group, with 'n/N' beside it when it is a mean over part of the group."""
    cov = summary.get("coverage", {}).get(group)
    if cov is None or not cov["partial"] or value is None:
        return _fmt(value)
    return f"{_fmt(value)} ({cov['datasets']}/{cov['of']})"


def _row_of(summary: dict[str, Any]) -> dict[str, float | None]:
    return {
        **summary["meta_tasks"],
        "IND": summary["IND"],
        "OOD": summary["OOD"],
        "overall": summary["overall"],
    }


def comparison_rows(summary: dict[str, Any]) -> list[tuple[str, str, dict[str, float | None]]]:
    """(model, source, scores per group): the published rows of REFERENCE §3, then ours."""
    rows = [(name, "published", dict(scores)) for name, scores in PUBLISHED_RESULTS.items()]
    label = f"ours: {summary['model'] or 'model'}" + (" [partial]" if summary.get("partial") else "")
    rows.append((label, "ours", _row_of(summary)))
    return rows


def _fmt(value: float | None, width: int = 0) -> str:
    text = "-" if value is None else f"{value:.1f}"
    return text.rjust(width) if width else text


def _registry_sizes() -> dict[str, int]:
    sizes = dict.fromkeys(GROUPS, 0)
    for info in MMEB_DATASETS.values():
        for group in (info.meta_task, info.split, "overall"):
            sizes[group] += 1
    return sizes


def _counts_line(summary: dict[str, Any]) -> str:
    n, full = summary["num_datasets"], _registry_sizes()
    return ", ".join(f"{_HEADERS[g]} {n[g]}/{full[g]}" for g in GROUPS)


def format_table(summary: dict[str, Any], per_dataset: bool = True) -> str:
    """Plain-text tables: published rows beside ours, then (optionally) every dataset."""
    name_w = max(len(r[0]) for r in comparison_rows(summary)) + 2
    lines = [
        f"MMEB {summary['metric']} (%), means over datasets; ties: {summary.get('ties', 'reference')}",
        "model".ljust(name_w) + "".join(_HEADERS[g].rjust(14) for g in GROUPS),
    ]
    for model, source, scores in comparison_rows(summary):
        cells = [
            _cell(summary, g, scores.get(g)) if source == "ours" else _fmt(scores.get(g)) for g in GROUPS
        ]
        lines.append(model.ljust(name_w) + "".join(c.rjust(14) for c in cells))
    lines.append(f"datasets evaluated: {_counts_line(summary)}")
    if partial_note(summary):
        lines.append(partial_note(summary))
    if per_dataset and summary["datasets"]:
        width = max(len(n) for n in summary["datasets"]) + 2
        lines += [
            "",
            "dataset".ljust(width)
            + "meta-task".ljust(16)
            + "split".ljust(7)
            + "".join(m.rjust(13) for m in (*METRICS, "queries")),
        ]
        for name, r in summary["datasets"].items():
            lines.append(
                name.ljust(width)
                + r["meta_task"].ljust(16)
                + (r["split"] or "-").ljust(7)
                + "".join(_fmt(r[m], 13) for m in METRICS)
                + str(r["num_queries"]).rjust(13)
            )
    if per_dataset:  # the short table only counts them (partial_note)
        lines += [f"missing: {name} ({info.get('reason', '')})" for name, info in summary["missing"].items()]
    return "\n".join(lines)


def format_markdown(summary: dict[str, Any]) -> str:
    head = "| model | " + " | ".join(_HEADERS[g] for g in GROUPS) + " |"
    lines = [
        f"# MMEB evaluation: {summary['model'] or 'model'}",
        "",
        f"{summary['metric']} (%); meta-task, IND, OOD and overall scores are means over datasets.",
        f"Tie rule: `{summary.get('ties', 'reference')}`: {TIE_NOTES.get(summary.get('ties', 'reference'), '')}.",
        f"Datasets evaluated: {_counts_line(summary)}.",
        *([f"**{partial_note(summary)}**"] if partial_note(summary) else []),
        "",
        head,
        "|" + "---|" * (len(GROUPS) + 1),
    ]
    for model, source, scores in comparison_rows(summary):
        if source == "ours":
            cells = [_cell(summary, g, scores.get(g)) for g in GROUPS]
            lines.append(f"| **{model}** | " + " | ".join(cells) + " |")
        else:
            lines.append(f"| {model} | " + " | ".join(_fmt(scores.get(g)) for g in GROUPS) + " |")
    lines += [
        "",
        "| dataset | meta-task | split | precision@1 | hit@5 | hit@10 | MRR | queries |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in summary["datasets"].items():
        lines.append(
            f"| {name} | {r['meta_task']} | {r['split'] or '-'} | "
            + " | ".join(_fmt(r[m]) for m in METRICS)
            + f" | {r['num_queries']} |"
        )
    if summary["missing"]:
        lines += ["", "Missing (not evaluated, excluded from every mean):", ""]
        lines += [f"- {n}: {info.get('reason', '')}" for n, info in summary["missing"].items()]
    return "\n".join(lines) + "\n"


def format_csv(summary: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["model", "source", *GROUPS, "ties", "datasets", "missing"])
    cov = summary.get("coverage", {}).get("overall", {})
    for model, source, scores in comparison_rows(summary):
        ours = source == "ours"
        writer.writerow(
            [
                model,
                source,
                *("" if scores.get(g) is None else f"{scores[g]:.2f}" for g in GROUPS),
                summary.get("ties", "reference") if ours else "reference",
                f"{cov.get('datasets', '')}/{cov.get('of', '')}" if ours else "",
                " ".join(summary["missing"]) if ours else "",
            ]
        )
    return buf.getvalue()


def format_datasets_csv(summary: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["dataset", "meta_task", "split", *METRICS, "num_queries", "status"])
    for name, r in summary["datasets"].items():
        writer.writerow(
            [
                name,
                r["meta_task"],
                r["split"] or "",
                *(f"{r[m]:.4f}" for m in METRICS),
                r["num_queries"],
                "ok",
            ]
        )
    for name, info in summary["missing"].items():
        writer.writerow(
            [name, info.get("meta_task", ""), info.get("split") or "", "", "", "", "", "", "missing"]
        )
    return buf.getvalue()


def plot_meta_tasks(summary: dict[str, Any], path: str | Path) -> Path:
    """Grouped bars of the meta-task / IND / OOD / overall scores: ours beside the published rows."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = comparison_rows(summary)
    fig = Figure(figsize=(12, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.85 / len(rows)
    for k, (model, source, scores) in enumerate(rows):
        xs = [
            i + (k - (len(rows) - 1) / 2) * width for i, g in enumerate(GROUPS) if scores.get(g) is not None
        ]
        ys = [scores[g] for g in GROUPS if scores.get(g) is not None]
        style = {"color": "black"} if source == "ours" else {}
        ax.bar(xs, ys, width=width, label=model, **style)
    ax.set_xticks(range(len(GROUPS)), [_HEADERS[g] for g in GROUPS])
    ax.set_ylabel(f"{summary['metric']} (%)")
    ax.set_ylim(0, 100)
    title = f"MMEB: ours (black) vs published; ties: {summary.get('ties', 'reference')}"
    if summary.get("partial"):
        cov = summary["coverage"]["overall"]
        title += f"; PARTIAL: {cov['datasets']}/{cov['of']} datasets"
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)


def print_eval_summary(summary: dict[str, Any], out: Path) -> None:
    """The end-of-run summary of `vlm2vec eval` (V1 or V2): reports, headline score, next command."""
    v2 = "modalities" in summary
    written = [
        ("report", out / "summary.md"),
        ("per dataset", out / "datasets"),
        ("summary", out / "summary.json"),
    ]
    if v2:
        value = (summary.get("overall") or {}).get("value")
        cover = f"{len(summary['datasets'])}/78 tasks scored"
    else:
        value = summary.get("overall")
        cov = summary["coverage"]["overall"]
        cover = f"{cov['datasets']}/{cov['of']} datasets"
    figures = [f"overall {value:.1f}" if value is not None else "no overall score", cover]
    if summary["missing"]:
        figures.append(f"{len(summary['missing'])} missing (partial)")
    print_summary(f"eval: results in {out}", written, figures, f"vlm2vec compare {out} OTHER_EVAL_DIR")


def write_reports(summary: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """summary.json, summary.md, summary.csv, datasets.csv and meta_tasks.png, each written atomically."""
    out = Path(out_dir)
    return {
        "json": atomic_write_json(out / "summary.json", summary),
        "md": atomic_write_text(out / "summary.md", format_markdown(summary)),
        "csv": atomic_write_text(out / "summary.csv", format_csv(summary)),
        "datasets_csv": atomic_write_text(out / "datasets.csv", format_datasets_csv(summary)),
        "png": plot_meta_tasks(summary, out / "meta_tasks.png"),
    }
