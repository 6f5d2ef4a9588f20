"""Compare result folders: per-dataset deltas (md / csv) and a chart, with the published rows alongside.

    vlm2vec compare RUN_A RUN_B [RUN_C ...] [--output-dir DIR]
    vlm2vec compare RUN_A RUN_B ...

Each RUN is an `eval.output_dir` (it holds summary.json). The first run is the baseline: every other
run's Precision@1 is shown beside it with its difference, per dataset and per meta-task / IND / OOD /
overall; the published rows of REFERENCE §3 come after the group table. A dataset that one run lacks
shows "-" (never a zero), and a run whose means are partial is marked so. Runs scored under
different tie rules are not comparable: that is an error naming the folders.

Writes `compare.md`, `compare.csv` (per dataset), `compare_groups.csv` and `compare.png` (per-dataset
deltas against the baseline) into the output folder, atomically; `run_compare` returns the path of
compare.md.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..atomic_files import atomic_path, atomic_write_text
from ..errors import UserError
from .registry import MMEB_DATASETS, PUBLISHED_RESULTS
from .reports import GROUP_HEADERS as _HEADERS
from .reports import GROUPS, MAIN_METRIC

SUMMARY_FILE = "summary.json"
#: the keys of an eval summary that the comparison reads
_SUMMARY_KEYS = ("datasets", "meta_tasks", "IND", "OOD", "overall", "num_datasets")


class CompareError(UserError, ValueError):
    """A result folder cannot be compared (no summary, other tie rule); the message names it."""


def _load(run_dir: Path) -> dict[str, Any]:
    file = run_dir / SUMMARY_FILE
    if not file.is_file():
        raise CompareError(f"{str(run_dir)!r} is not an evaluation result folder: no {SUMMARY_FILE} in it")
    try:
        summary = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CompareError(f"{str(file)!r}: cannot read it: {exc}") from None
    missing = [k for k in _SUMMARY_KEYS if not isinstance(summary, dict) or k not in summary]
    if missing:
        raise CompareError(
            f"{str(file)!r}: not an MMEB summary (no {', '.join(missing)}); compare reads the summary.json "
            "that `vlm2vec eval` writes"
        )
    return summary


def _labels(run_dirs: list[Path]) -> list[str]:
    """Folder names, or the full paths where two runs share a name."""
    names = [p.name or str(p) for p in run_dirs]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(run_dirs, names)]


def _group_scores(summary: dict[str, Any]) -> dict[str, float | None]:
    return {
        **summary["meta_tasks"],
        "IND": summary["IND"],
        "OOD": summary["OOD"],
        "overall": summary["overall"],
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _delta(value: float | None, base: float | None) -> float | None:
    return None if value is None or base is None else value - base


def _fmt_delta(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"


def _dataset_rows(summaries: list[dict[str, Any]]) -> list[tuple[str, str, str, list[float | None]]]:
    """(dataset, meta-task, split, P@1 per run): MMEB datasets in the paper's order, then others."""
    names: list[str] = [n for n in MMEB_DATASETS if any(n in s["datasets"] for s in summaries)]
    for s in summaries:
        names += [n for n in s["datasets"] if n not in MMEB_DATASETS and n not in names]
    rows = []
    for name in names:
        info = next(s["datasets"][name] for s in summaries if name in s["datasets"])
        values = [s["datasets"].get(name, {}).get(MAIN_METRIC) for s in summaries]
        rows.append((name, info["meta_task"], info.get("split") or "", values))
    return rows


def build_comparison(run_dirs: list[Path]) -> dict[str, Any]:
    """Load the runs and check they are comparable; the data behind every output of `run_compare`."""
    if len(run_dirs) < 2:
        raise CompareError(f"compare needs two or more result folders, got {len(run_dirs)}")
    summaries = [_load(Path(p)) for p in run_dirs]
    rules = {str(p): s.get("ties", "strict") for p, s in zip(run_dirs, summaries)}
    if len(set(rules.values())) > 1:
        raise CompareError(
            "runs were scored under different tie rules, their numbers are not comparable: "
            + ", ".join(f"{p}: {r}" for p, r in rules.items())
            + " (re-run with the same eval.ties; results are re-scored from the cache)"
        )
    return {
        "labels": _labels([Path(p) for p in run_dirs]),
        "summaries": summaries,
        "ties": next(iter(rules.values())),
        "datasets": _dataset_rows(summaries),
        "groups": [(g, [_group_scores(s)[g] for s in summaries]) for g in GROUPS],
    }


def _header(labels: list[str]) -> list[str]:
    base, others = labels[0], labels[1:]
    return [base, *(col for lab in others for col in (lab, f"Δ {lab} − {base}"))]


def _cells(values: list[float | None], fmt=_fmt) -> list[str]:
    base = values[0]
    return [fmt(base), *(c for v in values[1:] for c in (fmt(v), _fmt_delta(_delta(v, base))))]


def format_markdown(cmp: dict[str, Any]) -> str:
    labels, summaries = cmp["labels"], cmp["summaries"]
    head = _header(labels)
    lines = [
        f"# MMEB comparison: {' vs '.join(labels)}",
        "",
        f"{MAIN_METRIC} (%); Δ = run − {labels[0]} (the baseline); tie rule `{cmp['ties']}`; '-' = not evaluated.",
        "",
    ]
    for label, s in zip(labels, summaries):
        cov = s.get("coverage", {}).get("overall", {"datasets": s["num_datasets"]["overall"], "of": 36})
        state = "partial" if s.get("partial", cov["datasets"] < cov["of"]) else "complete"
        missing = f"; missing: {', '.join(s['missing'])}" if s.get("missing") else ""
        lines.append(
            f"- **{label}**: {s.get('model') or '?'}, {cov['datasets']}/{cov['of']} MMEB datasets ({state}){missing}"
        )
    lines += ["", "| group | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for group, values in cmp["groups"]:
        lines.append(f"| {_HEADERS[group]} | " + " | ".join(_cells(values)) + " |")
    lines += [
        "",
        "Published (REFERENCE §3):",
        "",
        "| model | " + " | ".join(_HEADERS[g] for g in GROUPS) + " |",
    ]
    lines.append("|---|" + "---|" * len(GROUPS))
    for model, scores in PUBLISHED_RESULTS.items():
        lines.append(f"| {model} | " + " | ".join(_fmt(scores.get(g)) for g in GROUPS) + " |")
    lines += [
        "",
        "| dataset | meta-task | split | " + " | ".join(head) + " |",
        "|---|---|---|" + "---|" * len(head),
    ]
    for name, task, split, values in cmp["datasets"]:
        lines.append(f"| {name} | {task} | {split or '-'} | " + " | ".join(_cells(values)) + " |")
    return "\n".join(lines) + "\n"


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _csv_cells(values: list[float | None]) -> list[str]:
    def num(v: float | None) -> str:
        return "" if v is None else f"{v:.4f}"

    return [num(values[0]), *(c for v in values[1:] for c in (num(v), num(_delta(v, values[0]))))]


def format_datasets_csv(cmp: dict[str, Any]) -> str:
    labels = cmp["labels"]
    header = [
        "dataset",
        "meta_task",
        "split",
        labels[0],
        *(c for lab in labels[1:] for c in (lab, f"delta_{lab}")),
    ]
    return _csv(header, [[n, t, s, *_csv_cells(v)] for n, t, s, v in cmp["datasets"]])


def format_groups_csv(cmp: dict[str, Any]) -> str:
    """Our runs' group scores with deltas, then the published rows (source column says which)."""
    labels = cmp["labels"]
    header = ["group", "source", labels[0], *(c for lab in labels[1:] for c in (lab, f"delta_{lab}"))]
    rows = [[g, "runs", *_csv_cells(v)] for g, v in cmp["groups"]]
    for model, scores in PUBLISHED_RESULTS.items():
        for g in GROUPS:
            value = scores.get(g)
            rows.append([g, f"published: {model}", "" if value is None else f"{value:.4f}"])
    return _csv(header, rows)


def plot_deltas(cmp: dict[str, Any], path: Path) -> Path:
    """Per-dataset (and overall) P@1 difference of each run from the baseline, one bar group each."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = cmp["labels"]
    names = [n for n, *_ in cmp["datasets"]] + ["Overall"]
    series = [[*(v for *_, v in cmp["datasets"])], [dict(cmp["groups"])["overall"]]]
    rows = series[0] + series[1]
    fig = Figure(figsize=(max(8.0, 0.35 * len(names) + 2), 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(labels) - 1)
    for k, label in enumerate(labels[1:], start=1):
        xs, ys = [], []
        for i, values in enumerate(rows):
            d = _delta(values[k], values[0])
            if d is not None:
                xs.append(i + (k - 1 - (len(labels) - 2) / 2) * width)
                ys.append(d)
        ax.bar(xs, ys, width=width, label=f"{label} − {labels[0]}")
    published = PUBLISHED_RESULTS.get("VLM2Vec Phi-3.5-V LoRA", {}).get("overall")
    base_overall = dict(cmp["groups"])["overall"][0]
    if published is not None and base_overall is not None:
        ax.plot(
            [len(names) - 1],
            [published - base_overall],
            "k*",
            label="published VLM2Vec Phi-3.5-V LoRA − baseline",
        )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylabel(f"Δ {MAIN_METRIC} (points)")
    ax.set_title(f"MMEB: difference from {labels[0]} (ties: {cmp['ties']})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def run_compare(run_dirs: list[Path], output_dir: Path) -> Path:
    """Write compare.md / compare.csv / compare_groups.csv / compare.png for the runs; return compare.md."""
    cmp = build_comparison([Path(p) for p in run_dirs])
    out = Path(output_dir)
    atomic_write_text(out / "compare.csv", format_datasets_csv(cmp))
    atomic_write_text(out / "compare_groups.csv", format_groups_csv(cmp))
    plot_deltas(cmp, out / "compare.png")
    return atomic_write_text(out / "compare.md", format_markdown(cmp))
