"""Plots for reports: validation curves, test BLEU bars and attention heatmaps.

matplotlib is imported lazily and driven through its object-oriented API on the Agg
canvas (no pyplot, no global backend switch): plotting works without a display and
never changes the backend of a program that imports ``nmt``. Every function takes plain
numbers and labels; where they come from (a model, a results file) is the caller's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


# --- matplotlib ---------------------------------------------------------------------------
def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure bound to an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=120)
    return path


def plot_validation_curves(curves: dict[str, list[tuple[float, float]]], path: Path) -> Path:
    """One line per run: validation BLEU (y) against training minutes (x)."""
    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    for name, points in curves.items():
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", markersize=3, label=name)
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel("validation BLEU (greedy)")
    ax.set_title("Validation BLEU during training")
    ax.grid(alpha=0.3)
    if any(curves.values()):
        ax.legend()
    return _save(fig, path)


def plot_test_bleu(scores: dict[str, dict[str, float]], path: Path) -> Path:
    """Grouped bars: one group per test set, one bar per run (``scores[run][set]``); a run
    not scored on a set has no bar there (not a bar at 0)."""
    runs = list(scores)
    sets = sorted(dict.fromkeys(s for per_run in scores.values() for s in per_run))
    fig = _figure(max(5.0, 1.5 + len(sets) * (0.5 + 0.4 * len(runs))), 4.5)
    ax = fig.add_subplot()
    width = 0.8 / max(len(runs), 1)
    for i, run in enumerate(runs):
        offset = (i - (len(runs) - 1) / 2) * width
        xs = [j + offset for j, s in enumerate(sets) if s in scores[run]]
        ys = [scores[run][s] for s in sets if s in scores[run]]
        bars = ax.bar(xs, ys, width, label=run)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(len(sets)), sets)
    ax.set_ylabel("test BLEU (sacreBLEU, beam 5)")
    ax.set_title("Test BLEU")
    ax.legend()
    return _save(fig, path)


def plot_attention(
    weights: list[list[float]],
    src_labels: list[str],
    tgt_labels: list[str],
    path: Path,
    title: str = "",
) -> Path:
    """Heatmap of ``weights`` (T, S): source labels on x, output labels on y."""
    cols, rows = len(src_labels), len(tgt_labels)
    fig = _figure(min(3 + 0.35 * cols, 30), min(2.5 + 0.3 * rows, 30))
    ax = fig.add_subplot()
    image = ax.imshow(weights, cmap="viridis", aspect="auto", vmin=0.0)
    ax.set_xticks(range(cols), src_labels, rotation=90, fontsize=8)
    ax.set_yticks(range(rows), tgt_labels, fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.04)
    return _save(fig, path)
