"""The runs of a comparison: one per config, trained (or reused) through ``nmt train``'s
own entry point, and what their training logs say."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import signal
import statistics
from pathlib import Path
from typing import Any

import torch
import yaml

from nmt.artifacts.rundir import RunDir, step_number
from nmt.config import Config, ConfigError, load_config, to_dict
from nmt.device import describe_device
from nmt.errors import Interrupted
from nmt.training import run_training

log = logging.getLogger("nmt.compare")


@dataclasses.dataclass
class RunSpec:
    """One config of the comparison and the run directory it trains into."""

    name: str
    config: Path
    cfg: Config
    run_dir: Path

    @property
    def run(self) -> RunDir:
        return RunDir(self.run_dir)


def plan_runs(
    configs: list[Path], out: Path, overrides: list[str], budget_minutes: float | None
) -> list[RunSpec]:
    """Load every config with the overrides (and the budget as ``train.max_minutes``)."""
    if not configs:
        raise ConfigError("give at least one config to compare")
    sets = list(overrides)
    if budget_minutes is not None:
        sets.append(f"train.max_minutes={budget_minutes}")
    names = _run_names(configs)
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"two configs would share the run directory {out / dup}")
    return [
        RunSpec(name, Path(path), load_config(path, sets), Path(out) / name)
        for name, path in zip(names, configs)
    ]


def _run_names(configs: list[Path]) -> list[str]:
    """The config stem; ``<folder>-<stem>`` where stems collide (de-en/x.yaml, en-de/x.yaml)."""
    stems = [Path(p).stem for p in configs]
    return [
        f"{Path(p).parent.name}-{Path(p).stem}" if stems.count(Path(p).stem) > 1 else Path(p).stem
        for p in configs
    ]


def ensure_trained(spec: RunSpec) -> dict:
    """Train (or resume) ``spec`` unless its run dir is finished; return its ``done.json``."""
    run = spec.run
    if run.is_finished():
        log.info("%s: reusing the finished run in %s", spec.name, spec.run_dir)
        _warn_if_changed(spec)
        return json.loads(run.done.read_text(encoding="utf-8"))
    resume = run.is_resumable()
    if resume:
        log.info("%s: resuming the unfinished run in %s", spec.name, spec.run_dir)
        _warn_if_changed(spec)
    outcome = run_training(spec.cfg, spec.run_dir, resume=resume)
    if outcome.interrupted:
        message = "interrupted: run the same `nmt compare` command again to resume"
        raise Interrupted(outcome.signal or signal.SIGINT, message)
    done = {
        "backbone": spec.cfg.model.type,
        "parameters": outcome.parameters,
        "device": describe_device(torch.device(outcome.device)),
        "stop_reason": outcome.stop_reason,
        "steps": outcome.state.step,
        "train_minutes": outcome.state.elapsed / 60,
        "torch": torch.__version__,
        "finished": now(),
    }
    write_json(run.done, done)
    return done


def _warn_if_changed(spec: RunSpec) -> None:
    """Warn when the config now differs from the one the run directory was trained with."""
    path = spec.run.config
    if not path.is_file():
        return
    try:  # defaults filled in: a key added since the run was trained is not a change
        old = _flatten(to_dict(load_config(path)))
    except ConfigError:  # a key since removed, or a device this machine lacks
        old = _flatten(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    new = _flatten(to_dict(spec.cfg))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if changed:
        log.warning(
            "%s: the config differs from the one %s was trained with (%s); "
            "delete that directory to train again",
            spec.name,
            spec.run_dir,
            ", ".join(changed[:6]) + (", ..." if len(changed) > 6 else ""),
        )


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_metrics(run: RunDir) -> list[dict]:
    """The records of ``metrics.jsonl`` (a line cut short by a crash is skipped)."""
    if not run.metrics.is_file():
        return []
    records = []
    for line in run.metrics.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(line))
    return records


def training_summary(spec: RunSpec, done: dict) -> dict:
    """Parameters, device, time, throughput and the validation curve of one run."""
    records = read_metrics(spec.run)
    rates = [r["tokens_per_s"] for r in records if "tokens_per_s" in r]
    valid = [r for r in records if "valid_bleu" in r] if spec.cfg.train.valid_bleu else []
    best = max(valid, key=lambda r: r["valid_bleu"], default=None)
    minutes = done.get("train_minutes")
    if minutes is None:
        minutes = max((r.get("minutes", 0.0) for r in records), default=None)
    return {
        "parameters": done.get("parameters"),
        "device": done.get("device"),
        "train_minutes": minutes,
        "steps": done.get("steps"),
        "stop_reason": done.get("stop_reason"),
        "tokens_per_s": statistics.fmean(rates) if rates else None,
        "best_valid_bleu": best["valid_bleu"] if best else None,
        "best_valid_step": best["step"] if best else None,
        "selected_model": describe_selected(best),
        "valid_curve": [  # the training curve; the end-of-training average is not on it
            {"step": r["step"], "minutes": r["minutes"], "valid_bleu": r["valid_bleu"]}
            for r in valid
            if "averaged" not in r
        ],
    }


def describe_selected(record: dict | None) -> str | None:
    """``step N``, or ``average of K (steps A-B)`` when checkpoint averaging won on validation."""
    if record is None:
        return None
    names = record.get("averaged")
    if not names:
        return f"step {record['step']}"
    steps = [step_number(name) for name in names]
    return f"average of {len(steps)} (steps {min(steps)}-{max(steps)})"


def write_json(path: Path, data: Any) -> None:
    from nmt.artifacts.checkpoint import atomic_write

    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    atomic_write(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")
