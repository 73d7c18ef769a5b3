"""``nmt data prepare`` and ``nmt data stats``: build the store ahead of training, and
describe the data the way a user checks it before a long run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from nmt.config import Config
from nmt.data.readers import read_pairs
from nmt.data.sources import direction_data, resolve_split
from nmt.data.store.corpus import StoreCorpus
from nmt.data.store.ensure import ensure_store
from nmt.data.store.manifest import read_manifest
from nmt.data.store.training_data import prepare_tokenizer
from nmt.languages import config_directions

log = logging.getLogger("nmt.data.store")

PERCENTILES = (50, 90, 99)


def prepare(cfg: Config, rebuild: bool = False) -> dict[str, Any]:
    """Train or load the tokenizer and make the training stores up to date, hashing every
    corpus and array file (no trust in modification times). Returns their statistics:
    ``{"train": ...}``, or ``{"train de-en": ..., ...}`` for a multilingual config."""
    tok = prepare_tokenizer(cfg)
    stats = {}
    for direction in config_directions(cfg.data):
        d = direction_data(cfg.data, direction)
        view = tok.for_target(d.tgt_lang)
        directory = ensure_store(d, d.train, view, hash_inputs=True, rebuild=rebuild)
        stats[_label(cfg, "train", direction.name)] = store_stats(directory)
    return stats


def data_stats(cfg: Config) -> dict[str, Any]:
    """Statistics of the training split (building its store if needed) and the validation
    split: pairs, subwords per side, length percentiles, what the length filter drops
    (per direction for a multilingual config)."""
    tok = prepare_tokenizer(cfg)
    stats = {}
    for direction in config_directions(cfg.data):
        d = direction_data(cfg.data, direction)
        view = tok.for_target(d.tgt_lang)
        directory = ensure_store(d, d.train, view)
        va_src, va_tgt = read_pairs(resolve_split(d, d.valid))
        valid = StoreCorpus.from_sequences(view.encode_src(va_src), tok.encode_tgt(va_tgt))
        stats[_label(cfg, "train", direction.name)] = store_stats(directory)
        stats[_label(cfg, "valid", direction.name)] = corpus_stats(valid, None)
    return stats


def _label(cfg: Config, split: str, direction: str) -> str:
    return f"{split} {direction}" if cfg.data.directions else split


def store_stats(directory: Path) -> dict[str, Any]:
    manifest = read_manifest(directory) or {}
    stats = corpus_stats(StoreCorpus.open(directory), manifest["counts"])
    stats["store"] = str(directory)
    stats["store_bytes"] = sum(p.stat().st_size for p in directory.iterdir())
    stats["inputs"] = [rec["path"] for rec in manifest["inputs"]]
    stats["max_len"] = manifest["identity"]["max_len"]
    return stats


def corpus_stats(corpus: StoreCorpus, counts: dict[str, Any] | None) -> dict[str, Any]:
    """Lengths in subwords (the source's EOS not counted), kept pairs and, from the
    build's histograms, all pairs before the length filter."""
    src_len = corpus.src_lengths - 1  # without EOS
    tgt_len = corpus.tgt_lengths
    n = len(corpus)
    stats: dict[str, Any] = {
        "pairs": counts["read"] if counts else n,
        "kept": n,
        "dropped_empty": counts["empty"] if counts else 0,
        "dropped_too_long": counts["too_long"] if counts else 0,
        "subwords": {"src": int(src_len.sum()), "tgt": int(tgt_len.sum())},
        "lengths": {
            "src": percentiles(np.bincount(src_len)),
            "tgt": percentiles(np.bincount(tgt_len)),
        },
    }
    if counts:
        src_hist = _dense(counts["histograms"]["src"])[1:]  # source lengths count EOS
        stats["lengths_before_filter"] = {
            "src": percentiles(src_hist),
            "tgt": percentiles(_dense(counts["histograms"]["tgt"])),
        }
    return stats


def _dense(histogram: dict[str, int]) -> np.ndarray:
    out = np.zeros(max((int(k) for k in histogram), default=-1) + 1, dtype=np.int64)
    for length, count in histogram.items():
        out[int(length)] = count
    return out


def percentiles(counts: np.ndarray) -> dict[str, int]:
    """p50/p90/p99/max of the lengths whose histogram is ``counts`` (``counts[L]`` = how
    many have length L): the smallest L with at least p% of the sentences at or below
    it (numpy's ``inverted_cdf`` percentile)."""
    total = int(counts.sum())
    if total == 0:
        return {**{f"p{p}": 0 for p in PERCENTILES}, "max": 0}
    cumulative = np.cumsum(counts)
    out = {f"p{p}": int(np.searchsorted(cumulative, total * p / 100)) for p in PERCENTILES}
    out["max"] = int(np.flatnonzero(counts)[-1])
    return out


def format_stats(stats: dict[str, Any]) -> str:
    """The report of ``nmt data stats`` as text."""
    lines = []
    for split, s in stats.items():
        lines.append(f"{split}: {s['pairs']:,} pairs")
        if "store" in s:
            lines.append(f"  files      {', '.join(s['inputs'])}")
            lines.append(f"  store      {s['store']} ({s['store_bytes'] / 1e6:,.1f} MB)")
            dropped = s["pairs"] - s["kept"]
            lines.append(
                f"  kept       {s['kept']:,}; dropped {dropped:,} ({s['dropped_empty']:,} "
                f"empty, {s['dropped_too_long']:,} longer than max_len {s['max_len']})"
            )
        lines.append(
            f"  subwords   source {s['subwords']['src']:,}, target {s['subwords']['tgt']:,}"
        )
        lines += _length_table("length (kept)", s["lengths"])
        if "lengths_before_filter" in s:
            lines += _length_table("length (all)", s["lengths_before_filter"])
    return "\n".join(lines)


def _length_table(title: str, lengths: dict[str, dict[str, int]]) -> list[str]:
    keys = [f"p{p}" for p in PERCENTILES] + ["max"]
    rows = [f"  {title:<14}" + "".join(f"{k:>7}" for k in keys)]
    for side, name in (("src", "source"), ("tgt", "target")):
        rows.append(f"    {name:<12}" + "".join(f"{lengths[side][k]:>7}" for k in keys))
    return rows
