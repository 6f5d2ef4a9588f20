"""The mining report: counts (kept, filtered and why, short rows) as markdown, score histograms as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic_files import atomic_path, atomic_write_text
from ..config import Config
from .mine_stats import REASONS, MineStats


def _quantiles(values: list[float]) -> str:
    if not values:
        return "-"
    q = np.quantile(np.asarray(values), [0.1, 0.5, 0.9])
    return " / ".join(f"{v:.3f}" for v in q)


def write_histogram(path: Path, stats: MineStats) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    series = [
        ("positives", stats.pos_scores),
        ("mined negatives", stats.neg_scores),
        ("dropped: above positive + margin", stats.dropped_scores),
    ]
    values = [v for _, s in series for v in s]
    bins = np.linspace(min(values), max(values), 41) if values else 10
    for label, data in series:
        if data:
            ax.hist(data, bins=bins, histtype="step", linewidth=1.6, label=f"{label} ({len(data)})")
    ax.set_xlabel("similarity to the query")
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def write_report(out: Path, stats: MineStats, cfg: Config, train_flags: list[str]) -> Path:
    """`report.md` + `report.png` in `out`."""
    m = cfg.mine
    write_histogram(out / "report.png", stats)
    margin = "off" if m.margin is None else f"{m.margin:+g}"
    lines = [
        "# Hard-negative mining report",
        "",
        f"strategy `{m.strategy}`, {m.num_negatives} negatives per row from the top {m.top_k} "
        f"(scope `{m.scope}`{f', ranks {m.rank_start}..{m.rank_end}' if m.strategy == 'range' else ''}), "
        f"margin {margin}, class filter {'on' if m.filter_class else 'off'}, backend `{m.backend}`, seed {m.seed}",
        "",
        "| | count |",
        "|---|---:|",
        f"| training queries | {stats.queries} |",
        f"| rows written | {stats.rows_written} |",
        f"| rows with fewer than {m.num_negatives} negatives | {stats.rows_short}"
        f" ({'kept' if m.keep_short else 'dropped'}) |",
        f"| bad rows skipped (data.skip_bad_rows) | {len(stats.skipped_rows)} |",
        f"| candidates retrieved | {stats.retrieved} |",
    ]
    labels = {
        "positive": "filtered: the positive itself",
        "same_content": "filtered: same content as the positive (image file or text)",
        "same_class": "filtered: same class name as the positive",
        "above_margin": f"filtered: score above positive {margin}",
    }
    lines += [f"| {labels[r]} | {stats.filtered.get(r, 0)} |" for r in REASONS]
    lines += [
        f"| negatives written | {len(stats.neg_scores)} |",
        "",
        "| scores (10% / 50% / 90%) | |",
        "|---|---|",
        f"| positives | {_quantiles(stats.pos_scores)} |",
        f"| mined negatives | {_quantiles(stats.neg_scores)} |",
        f"| dropped above the margin | {_quantiles(stats.dropped_scores)} |",
        "",
        "![scores](report.png)",
        "",
        "| source | rows | written | short |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {n} | {s['rows']} | {s['written']} | {s['short']} |" for n, s in stats.per_source.items()]
    lines += [
        "",
        "Train with them:",
        "",
        "    python train.py --config <your config> " + " ".join(train_flags),
        "",
    ]
    return atomic_write_text(out / "report.md", "\n".join(lines))
