"""``nmt compare``: train several configs, evaluate them alike, write one report.

For every config, ``OUT/<config stem>/`` is an ordinary run directory (:mod:`nmt.train`)
with three additions:

    done.json                 written once training has finished (not interrupted): device,
                              parameters, steps, minutes, stop reason. A run directory
                              holding it is reused as it is, never retrained.
    evaluation.json           test scores and translation speed of its checkpoint; reused
                              until the checkpoint or the search settings change
    test/<set>.beam5.<tgt>    the test translations that were scored

A run directory without ``done.json`` but with a resumable checkpoint (an interrupted
run) continues training; the budget counts the time already spent. ``OUT`` receives
``RESULTS.md``, ``results.json`` and the plots ``valid_bleu.png``, ``test_bleu.png`` and
``attention_<name>.png`` (for the backbones that have attention).

Test BLEU is sacreBLEU (cased, 13a, detokenized) of beam-5 output with the config's
length penalty, from the best checkpoint by validation BLEU: test sets are never used
for model selection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import statistics
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sacrebleu
import torch
import yaml

from nmt import plots
from nmt.average import step_number
from nmt.checkpoint import atomic_write, load_checkpoint, resolve_model_path
from nmt.config import Config, ConfigError, load_config, to_dict
from nmt.device import resolve_device
from nmt.evaluate import score
from nmt.textio import read_lines
from nmt.train import Trainer
from nmt.translate import Translator

log = logging.getLogger("nmt.compare")

MULTI30K_TEST_SETS = (
    "test_2016_flickr",
    "test_2017_flickr",
    "test_2017_mscoco",
    "test_2018_flickr",
)
BEAM = 5  # beam of the test scores (and of the beam-search speed)
DONE, EVALUATION = "done.json", "evaluation.json"
SCORE_KEYS = (
    "n",
    "bleu",
    "bleu_signature",
    "bleu_lowercase",
    "bleu_lowercase_signature",
    "chrf",
    "chrf_signature",
    "ter",
    "ter_signature",
)


@dataclasses.dataclass
class RunSpec:
    """One config of the comparison and the run directory it trains into."""

    name: str
    config: Path
    cfg: Config
    run_dir: Path


# --- planning ------------------------------------------------------------------------------
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


# --- training ------------------------------------------------------------------------------
def ensure_trained(spec: RunSpec) -> dict:
    """Train (or resume) ``spec`` unless its run dir is finished; return its ``done.json``."""
    done_path = spec.run_dir / DONE
    if done_path.is_file():
        log.info("%s: reusing the finished run in %s", spec.name, spec.run_dir)
        _warn_if_changed(spec)
        return json.loads(done_path.read_text(encoding="utf-8"))
    resume = (spec.run_dir / "last.state.pt").is_file()
    if resume:
        log.info("%s: resuming the unfinished run in %s", spec.name, spec.run_dir)
        _warn_if_changed(spec)
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    with _file_log(spec.run_dir / "train.log"):
        trainer = Trainer(spec.cfg, spec.run_dir, resume=resume)
        state = trainer.train()
    if trainer.stop_reason == "interrupted":
        log.warning("interrupted: run the same `nmt compare` command again to resume")
        raise KeyboardInterrupt
    done = {
        "backbone": spec.cfg.model.type,
        "parameters": trainer.model.num_parameters(),
        "device": describe_device(trainer.device),
        "stop_reason": trainer.stop_reason,
        "steps": state.step,
        "train_minutes": state.elapsed / 60,
        "torch": torch.__version__,
        "finished": _now(),
    }
    _write_json(done_path, done)
    return done


def describe_device(device: torch.device) -> str:
    """``cpu (N threads)`` or ``cuda:0 (GPU name)``, for reports."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"{device.type} ({threads} thread{'s' if threads != 1 else ''})"


def _warn_if_changed(spec: RunSpec) -> None:
    """Warn when the config now differs from the one the run directory was trained with."""
    path = spec.run_dir / "config.yaml"
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


@contextlib.contextmanager
def _file_log(path: Path) -> Iterator[None]:
    """Copy the ``nmt`` log into ``path`` while one run trains (one file per run)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("nmt")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()


# --- training metrics ----------------------------------------------------------------------
def read_metrics(run_dir: Path) -> list[dict]:
    """The records of ``metrics.jsonl`` (a line cut short by a crash is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(line))
    return records


def training_summary(spec: RunSpec, done: dict) -> dict:
    """Parameters, device, time, throughput and the validation curve of one run."""
    records = read_metrics(spec.run_dir)
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


# --- test sets and evaluation --------------------------------------------------------------
def find_test_sets(cfg: Config, wanted: list[str] | None = None) -> dict[str, tuple[Path, Path]]:
    """``{set: (source file, reference file)}`` for the sets present in ``data.dir``.

    Default: the config's ``data.test``, then every Multi30k test set. Missing sets are
    skipped with a warning; finding none at all is an error.
    """
    d = cfg.data
    names = list(dict.fromkeys(wanted or [d.test, *MULTI30K_TEST_SETS]))
    found = {}
    for name in names:
        src, ref = Path(d.dir) / f"{name}.{d.src_lang}", Path(d.dir) / f"{name}.{d.tgt_lang}"
        if src.is_file() and ref.is_file():
            found[name] = (src, ref)
        else:
            log.warning("test set %s is not in %s: skipped", name, d.dir)
    if not found:
        raise ConfigError(f"no test set found in {d.dir} (looked for {', '.join(names)})")
    return found


def load_translator(checkpoint: Path, cfg: Config) -> Translator:
    """Beam-5 translator (fp32) over a checkpoint, with the search settings of ``cfg``."""
    device = resolve_device(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    model, tok, _, _ = load_checkpoint(checkpoint, device)
    search = dataclasses.replace(cfg.search, beam=BEAM, nbest=1)
    return Translator(model, tok, search, device, "fp32")


def score_test_set(translator: Translator, src: Path, ref: Path, hyp_path: Path) -> dict:
    """Translate ``src`` (timed), write the output to ``hyp_path``, score it against ``ref``."""
    sources, refs = read_lines(src), read_lines(ref)
    if len(sources) != len(refs):
        raise ConfigError(f"{src} has {len(sources)} lines but {ref} has {len(refs)}")
    start = time.perf_counter()
    hyps = translator.translate_lines(sources)
    seconds = time.perf_counter() - start
    hyp_path.parent.mkdir(parents=True, exist_ok=True)
    hyp_path.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    scores = score(hyps, refs)
    result = {key: scores[key] for key in SCORE_KEYS}
    result.update(seconds=seconds, hyp_file=hyp_path.name)
    return result


def measure_speed(translator: Translator, src: Path, name: str, beam_seconds: float) -> dict:
    """Sentences/s of greedy search (timed here) and of beam search (timed when scoring)."""
    sources = read_lines(src)
    greedy = dataclasses.replace(translator, search=dataclasses.replace(translator.search, beam=1))
    start = time.perf_counter()
    greedy.translate_lines(sources)
    greedy_seconds = time.perf_counter() - start
    return {
        "test_set": name,
        "sentences": len(sources),
        "batch_size": translator.search.batch_size,
        "device": describe_device(translator.device),
        "precision": translator.precision,
        "greedy_sent_per_s": len(sources) / max(greedy_seconds, 1e-9),
        f"beam{BEAM}_sent_per_s": len(sources) / max(beam_seconds, 1e-9),
    }


def evaluate_run(spec: RunSpec, sets: dict[str, tuple[Path, Path]]) -> dict:
    """Test scores on every set and speed on the first; cached in ``evaluation.json``."""
    checkpoint = resolve_model_path(spec.run_dir)
    cache = _read_cache(spec.run_dir / EVALUATION, _cache_key(checkpoint, spec.cfg))
    primary = next(iter(sets))
    todo = [name for name in sets if name not in cache["test"]]
    if todo or cache.get("speed", {}).get("test_set") != primary:
        translator = load_translator(checkpoint, spec.cfg)
        translator.translate_lines(read_lines(sets[primary][0])[:16])  # warm-up, not timed
        for name in todo:
            log.info("%s: translating %s (beam %d)", spec.name, name, BEAM)
            hyp_path = spec.run_dir / "test" / f"{name}.beam{BEAM}.{spec.cfg.data.tgt_lang}"
            cache["test"][name] = score_test_set(translator, *sets[name], hyp_path)
        seconds = cache["test"][primary]["seconds"]
        cache["speed"] = measure_speed(translator, sets[primary][0], primary, seconds)
        _write_json(spec.run_dir / EVALUATION, cache)
    else:
        log.info("%s: reusing the test scores in %s", spec.name, spec.run_dir / EVALUATION)
    test = {name: dict(cache["test"][name]) for name in sets}
    for scores in test.values():  # cached as a name: run dirs can be moved
        scores["hyp_file"] = str(spec.run_dir / "test" / scores["hyp_file"])
    return {"checkpoint": checkpoint.name, "test": test, "speed": cache["speed"]}


def _cache_key(checkpoint: Path, cfg: Config) -> dict:
    stat = checkpoint.stat()
    return {
        "checkpoint": checkpoint.name,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "beam": BEAM,
        "search": to_dict(cfg)["search"],
        "device": cfg.train.device,
    }


def _read_cache(path: Path, key: dict) -> dict:
    """The cached evaluation when it was made with ``key``, else an empty one."""
    if path.is_file():
        with contextlib.suppress(json.JSONDecodeError):
            cache = json.loads(path.read_text(encoding="utf-8"))
            if cache.get("key") == key:
                return cache
    return {"key": key, "test": {}}


# --- plots ---------------------------------------------------------------------------------
def pick_sentence(lines: list[str]) -> int:
    """Index of the first line of 8 to 16 words (else the first non-empty one), for plots."""
    for i, line in enumerate(lines):
        if 8 <= len(line.split()) <= 16:
            return i
    return next((i for i, line in enumerate(lines) if line.strip()), 0)


def attention_plot(spec: RunSpec, sets: dict[str, tuple[Path, Path]], out: Path) -> dict | None:
    """Heatmap of one test sentence for a backbone with attention; None for the others."""
    name, (src, _) = next(iter(sets.items()))
    lines = read_lines(src)
    index = pick_sentence(lines)
    translator = load_translator(resolve_model_path(spec.run_dir), spec.cfg)
    try:
        amap = plots.sentence_attention(translator, lines[index])
    except plots.PlotError as e:
        log.info("%s: no attention plot (%s)", spec.name, e)
        return None
    path = out / f"attention_{spec.name}.png"
    label = (
        spec.name if spec.name == spec.cfg.model.type else f"{spec.name} ({spec.cfg.model.type})"
    )
    title = f"{label}: {name}, line {index + 1}"
    plots.plot_attention(amap, path, title)
    return {
        "file": path.name,
        "test_set": name,
        "line": index + 1,
        "source": lines[index],
        "translation": amap.translation,
    }


def summary_plots(runs: list[dict], out: Path) -> dict:
    """Validation curves and test BLEU bars of all runs; returns the file names."""
    curves = {r["name"]: [(p["minutes"], p["valid_bleu"]) for p in r["valid_curve"]] for r in runs}
    bleu = {r["name"]: {s: t["bleu"] for s, t in r["test"].items()} for r in runs}
    plots.plot_validation_curves(curves, out / "valid_bleu.png")
    plots.plot_test_bleu(bleu, out / "test_bleu.png")
    return {"valid_bleu": "valid_bleu.png", "test_bleu": "test_bleu.png"}


# --- the whole comparison ------------------------------------------------------------------
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
    with_plots = plots.have_matplotlib()
    if not with_plots:
        log.warning("matplotlib is not installed: skipping the plots (pip install matplotlib)")
    runs = [
        _run_result(spec, done, sets, out, with_plots)
        for spec, done, sets in zip(specs, dones, test_sets)
    ]
    results = {
        "generated": _now(),
        "budget_minutes": budget_minutes,
        "overrides": list(overrides or []),
        "beam": BEAM,
        "versions": {"torch": torch.__version__, "sacrebleu": sacrebleu.__version__},
        "runs": runs,
        "plots": summary_plots(runs, out) if with_plots else {},
    }
    _write_json(out / "results.json", results)
    report = out / "RESULTS.md"
    report.write_text(render_markdown(results), encoding="utf-8")
    log.info("wrote %s and %s", report, out / "results.json")
    return report


def _run_result(
    spec: RunSpec, done: dict, sets: dict[str, tuple[Path, Path]], out: Path, with_plots: bool
) -> dict:
    d = spec.cfg.data
    return {
        "name": spec.name,
        "backbone": spec.cfg.model.type,
        "config": str(spec.config),
        "run_dir": str(spec.run_dir),
        "languages": f"{d.src_lang}-{d.tgt_lang}",
        "length_penalty": spec.cfg.search.length_penalty,
        **training_summary(spec, done),
        **evaluate_run(spec, sets),
        "attention_plot": attention_plot(spec, sets, out) if with_plots else None,
    }


def _write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    atomic_write(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- RESULTS.md ----------------------------------------------------------------------------
def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "–" if value is None else format(value, spec)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table: header line, separator, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


MAIN_HEADER = [
    "run",
    "backbone",
    "parameters",
    "train time",
    "device",
    "train tokens/s",
    "best valid BLEU",
    "test set",
    "BLEU",
    "BLEU (lc)",
    "chrF",
    "TER",
    "greedy sent/s",
    f"beam {BEAM} sent/s",
]


def _main_row(run: dict) -> list[str]:
    test_set = run["speed"]["test_set"]
    t, speed = run["test"][test_set], run["speed"]
    cells = [
        run["name"],
        run["backbone"],
        _fmt(run["parameters"], ","),
        f"{_fmt(run['train_minutes'], '.1f')} min",
        run["device"] or "–",
        _fmt(run["tokens_per_s"], ",.0f"),
        _fmt(run["best_valid_bleu"]),
        test_set,
        _fmt(t["bleu"]),
        _fmt(t["bleu_lowercase"]),
        _fmt(t["chrf"]),
        _fmt(t["ter"]),
        _fmt(speed["greedy_sent_per_s"], ".1f"),
        _fmt(speed[f"beam{BEAM}_sent_per_s"], ".1f"),
    ]
    return cells


def _md_main(results: dict) -> list[str]:
    runs = results["runs"]
    budget = results["budget_minutes"]
    lines = [
        "# Benchmark results",
        "",
        f"Generated {results['generated']} by `nmt compare` "
        + (f"(budget {budget:g} minutes per run)." if budget is not None else "(config budgets)."),
        "",
        f"Test scores: sacreBLEU on detokenized output, beam {BEAM} with each config's length "
        "penalty, best checkpoint by greedy validation BLEU (the test sets never select "
        "anything). Speed: sentences/s translating the whole test set, fp32, "
        "the config's batch size.",
        "",
        *_md_table(MAIN_HEADER, [_main_row(r) for r in runs]),
        "",
    ]
    return lines + _md_signatures(runs)


def _md_signatures(runs: list[dict]) -> list[str]:
    lines = ["Signatures:", ""]
    for label, key in [
        ("BLEU", "bleu_signature"),
        ("BLEU (lc)", "bleu_lowercase_signature"),
        ("chrF", "chrf_signature"),
        ("TER", "ter_signature"),
    ]:
        sigs = dict.fromkeys(t[key] for r in runs for t in r["test"].values())
        lines += [f"- {label}: `{sig}`" for sig in sigs]
    return lines + [""]


def _md_all_sets(runs: list[dict]) -> list[str]:
    rows = [
        [r["name"], name, str(t["n"])]
        + [_fmt(t[k]) for k in ("bleu", "bleu_lowercase", "chrf", "ter")]
        for r in runs
        for name, t in r["test"].items()
    ]
    header = ["run", "test set", "sentences", "BLEU", "BLEU (lc)", "chrF", "TER"]
    return ["## All test sets", "", *_md_table(header, rows), ""]


def _md_plots(results: dict) -> list[str]:
    if not results["plots"]:
        return ["## Plots", "", "None: matplotlib was not installed.", ""]
    lines = [
        "## Plots",
        "",
        "![Validation BLEU against training time](valid_bleu.png)",
        "",
        "![Test BLEU](test_bleu.png)",
        "",
    ]
    for r in results["runs"]:
        a = r["attention_plot"]
        if a:
            lines += [
                f"Attention of `{r['name']}` on {a['test_set']} line {a['line']}:",
                f"`{a['source']}` -> `{a['translation']}`",
                "",
                f"![Attention of {r['name']}]({a['file']})",
                "",
            ]
    return lines


def _md_runs(runs: list[dict]) -> list[str]:
    rows = [
        [
            r["name"],
            f"`{r['config']}`",
            r["languages"],
            _fmt(r["steps"], "d"),
            r["stop_reason"] or "–",
            r.get("selected_model") or "–",
            f"`{r['run_dir']}`",
        ]
        for r in runs
    ]
    header = ["run", "config", "languages", "steps", "stopped by", "selected model", "run dir"]
    return ["## Runs", "", *_md_table(header, rows), ""]


def render_markdown(results: dict) -> str:
    """The report: main table, signatures, every test set, plots, run details."""
    runs = results["runs"]
    lines = _md_main(results) + _md_all_sets(runs) + _md_plots(results) + _md_runs(runs)
    return "\n".join(lines)
