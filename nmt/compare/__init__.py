"""``nmt compare``: train several configs, evaluate them alike, write one report.

    runs.py         one run per config: planned, trained (or reused) through ``nmt train``'s
                    entry point, summarised from its metrics
    evaluation.py   test sets, scores, speed (cached per run), the attention plot
    report.py       RESULTS.md and the summary plots, from results.json alone

For every config, ``OUT/<config stem>/`` is an ordinary run directory
(:mod:`nmt.artifacts.rundir`) plus ``done.json`` (training finished: such a directory is reused,
never retrained), ``evaluation.json`` (cached test scores) and ``test/`` (the scored
translations). A run directory without ``done.json`` but with a resumable checkpoint
continues training; the budget counts the time already spent. ``OUT`` receives
``RESULTS.md``, ``results.json`` and the plots ``valid_bleu.png``, ``test_bleu.png``
and ``attention_<name>.png`` (for the backbones that have attention).
"""

from __future__ import annotations

import logging
from pathlib import Path

import sacrebleu
import torch

from nmt.compare.evaluation import BEAM, TestSets, attention_plot, evaluate_run, find_test_sets
from nmt.compare.report import summary_plots, write_report
from nmt.compare.runs import (
    RunSpec,
    describe_selected,
    ensure_trained,
    now,
    plan_runs,
    training_summary,
    write_json,
)

__all__ = ["RunSpec", "describe_selected", "ensure_trained", "run_compare"]

log = logging.getLogger("nmt.compare")


def run_compare(
    configs: list[Path],
    out: Path,
    budget_minutes: float | None = None,
    tests: list[str] | None = None,
    overrides: list[str] | None = None,
) -> Path:
    """Train or reuse every config, evaluate, write results.json, RESULTS.md and plots."""
    out = Path(out)
    specs = plan_runs(configs, out, overrides or [], budget_minutes)
    test_sets = [find_test_sets(spec.cfg, tests) for spec in specs]  # fail before training
    dones = [ensure_trained(spec) for spec in specs]  # all training first: the long part
    runs = [_run_result(spec, done, sets, out) for spec, done, sets in zip(specs, dones, test_sets)]
    results = {
        "generated": now(),
        "budget_minutes": budget_minutes,
        "overrides": list(overrides or []),
        "beam": BEAM,
        "versions": {"torch": torch.__version__, "sacrebleu": sacrebleu.__version__},
        "runs": runs,
        "plots": summary_plots(runs, out),
    }
    write_json(out / "results.json", results)
    report = write_report(out, results)
    log.info("wrote %s and %s", report, out / "results.json")
    return report


def _run_result(spec: RunSpec, done: dict, sets: TestSets, out: Path) -> dict:
    d = spec.cfg.data
    return {
        "name": spec.name,
        "backbone": spec.cfg.model.type,
        "config": str(spec.config),
        "run_dir": str(spec.run_dir),
        "languages": ", ".join(d.directions) if d.directions else f"{d.src_lang}-{d.tgt_lang}",
        "length_penalty": spec.cfg.search.length_penalty,
        **training_summary(spec, done),
        **evaluate_run(spec, sets),
        "attention_plot": attention_plot(spec, sets, out),
    }
