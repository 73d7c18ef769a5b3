"""Plots for reports: validation curves, test BLEU bars and attention heatmaps.

matplotlib is imported lazily and driven through its object-oriented API on the Agg
canvas (no pyplot, no global backend switch): plotting works without a display and
never changes the backend of a program that imports ``nmt``. The attention of one
sentence is collected by greedy search (:func:`sentence_attention`); that part needs
no matplotlib.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nmt.errors import UsageError
from nmt.search import greedy_search
from nmt.translate import Translator


class PlotError(UsageError):
    """A plot that cannot be made (no matplotlib, a model without attention...)."""


def have_matplotlib() -> bool:
    """Whether matplotlib can be imported (plots are skipped or refused without it)."""
    return importlib.util.find_spec("matplotlib") is not None


# --- attention of one sentence ------------------------------------------------------------
@dataclass
class AttentionMap:
    """Attention weights of one greedy translation, with the pieces that label them."""

    src_pieces: list[str]  # source subword pieces, EOS included (x axis)
    tgt_pieces: list[str]  # output pieces, EOS included when emitted (y axis)
    weights: list[list[float]]  # (T, S): row t = attention while emitting tgt_pieces[t]
    translation: str  # the detokenized greedy output


def sentence_attention(translator: Translator, line: str) -> AttentionMap:
    """Greedy-translate one sentence, keeping the attention that ``decode_step`` reports.

    A model that only reports attention on request (an attribute ``keep_attention``, as
    the Transformer has) is switched on for this call and restored afterwards. Raises
    :class:`PlotError` when the backbone has no attention to show. A translator that
    collects attention its own way (an exported CTranslate2 model) is asked for it.
    """
    if hasattr(translator, "attention_map"):
        return translator.attention_map(line)
    model, tok = translator.model, translator.tok
    ids = tok.encode_src([line])[0]
    if translator.max_src_len and len(ids) > translator.max_src_len:
        raise PlotError(f"the sentence has {len(ids)} subwords, more than the model's limit")
    src = torch.tensor([ids], dtype=torch.long, device=translator.device)  # (1, S)
    previous = getattr(model, "keep_attention", None)
    if previous is not None:
        setattr(model, "keep_attention", True)  # noqa: B010 (any backbone with the toggle)
    try:
        model.eval()
        with torch.inference_mode():
            hyp = greedy_search(model, src, src != tok.pad_id, translator.limits, True)[0]
    finally:
        if previous is not None:
            setattr(model, "keep_attention", previous)  # noqa: B010
    if not hyp.attention:
        raise PlotError(f"the {type(model).__name__} backbone reports no attention to plot")
    src_pieces = tok.src_pieces(line)
    tgt_pieces = tok.tgt_pieces(hyp.tokens)
    tgt_pieces += ["</s>"] * (len(hyp.attention) - len(tgt_pieces))
    weights = [row[: len(src_pieces)] for row in hyp.attention]
    return AttentionMap(src_pieces, tgt_pieces, weights, translator.detok(hyp))


# --- matplotlib ---------------------------------------------------------------------------
def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure bound to an Agg canvas (raises PlotError without matplotlib)."""
    if not have_matplotlib():
        raise PlotError("matplotlib is not installed (pip install matplotlib)")
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
    """Grouped bars: one group per test set, one bar per run (``scores[run][set]``)."""
    runs = list(scores)
    sets = list(dict.fromkeys(s for per_run in scores.values() for s in per_run))
    fig = _figure(max(5.0, 1.5 + len(sets) * (0.5 + 0.4 * len(runs))), 4.5)
    ax = fig.add_subplot()
    width = 0.8 / max(len(runs), 1)
    for i, run in enumerate(runs):
        xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(sets))]
        ys = [scores[run].get(s, 0.0) for s in sets]
        bars = ax.bar(xs, ys, width, label=run)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(len(sets)), sets)
    ax.set_ylabel("test BLEU (sacreBLEU, beam 5)")
    ax.set_title("Test BLEU")
    ax.legend()
    return _save(fig, path)


def plot_attention(amap: AttentionMap, path: Path, title: str = "") -> Path:
    """Heatmap of ``amap.weights``: source pieces on x, target pieces on y."""
    cols, rows = len(amap.src_pieces), len(amap.tgt_pieces)
    fig = _figure(min(3 + 0.35 * cols, 30), min(2.5 + 0.3 * rows, 30))
    ax = fig.add_subplot()
    image = ax.imshow(amap.weights, cmap="viridis", aspect="auto", vmin=0.0)
    ax.set_xticks(range(cols), amap.src_pieces, rotation=90, fontsize=8)
    ax.set_yticks(range(rows), amap.tgt_pieces, fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.04)
    return _save(fig, path)
