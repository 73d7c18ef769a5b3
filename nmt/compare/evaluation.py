"""Evaluation of a comparison's runs: test sets, scores, speed, and the attention plot.

Test BLEU is sacreBLEU (cased, 13a, detokenized) of beam-5 output with the config's
length penalty, from the best checkpoint by validation BLEU: test sets are never used
for model selection. Scores are cached in ``RUN/evaluation.json`` until the checkpoint
or the search settings change. A multilingual run is scored on every test set of every
direction it was trained on (``<set>.<direction>``, e.g. ``test_2016_flickr.fr-en``);
every entry names its ``test_set`` and ``direction``, a bilingual run's too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from nmt import plots
from nmt.artifacts.checkpoint import resolve_model_path
from nmt.compare.runs import RunSpec, write_json
from nmt.config import Config, ConfigError, to_dict
from nmt.device import describe_device
from nmt.inference.load import TranslateOptions, open_translator
from nmt.inference.metrics import score
from nmt.inference.translator import NoAttentionError, Translator
from nmt.languages import config_directions
from nmt.textio import read_lines

log = logging.getLogger("nmt.compare")

MULTI30K_TEST_SETS = (
    "test_2016_flickr",
    "test_2017_flickr",
    "test_2017_mscoco",
    "test_2018_flickr",
)
BEAM = 5  # beam of the test scores (and of the beam-search speed)
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


@dataclass(frozen=True)
class TestSet:
    """One test set of one direction: its two files."""

    name: str  # test_2016_flickr
    direction: str  # de-en
    src: Path
    ref: Path

    @property
    def tgt_lang(self) -> str:
        return self.direction.split("-")[1]


TestSets = dict[str, TestSet]  # {set (multilingual: <set>.<direction>): its files}


def find_test_sets(cfg: Config, wanted: list[str] | None = None) -> TestSets:
    """The test sets present in ``data.dir``, for each direction of the config.

    Default: the config's ``data.test``, then every Multi30k test set. Missing sets are
    skipped with a warning; finding none at all is an error.
    """
    d = cfg.data
    names = list(dict.fromkeys(wanted or [d.test, *MULTI30K_TEST_SETS]))
    found = {}
    for direction in config_directions(d):
        for name in names:
            src = Path(d.dir) / f"{name}.{direction.src}"
            ref = Path(d.dir) / f"{name}.{direction.tgt}"
            key = f"{name}.{direction.name}" if d.directions else name
            if src.is_file() and ref.is_file():
                found[key] = TestSet(name, direction.name, src, ref)
            else:
                log.warning("test set %s (%s) is not in %s: skipped", name, direction.name, d.dir)
    if not found:
        raise ConfigError(f"no test set found in {d.dir} (looked for {', '.join(names)})")
    return found


def load_translator(checkpoint: Path, cfg: Config) -> Translator:
    """Beam-5 translator (fp32) over a checkpoint, with the search settings of ``cfg``;
    :meth:`~nmt.inference.translator.Translator.for_target` picks each test set's target."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    search = dataclasses.replace(cfg.search, beam=BEAM, nbest=1)
    return open_translator(checkpoint, TranslateOptions(device=cfg.train.device), search)


def score_test_set(translator: Translator, test: TestSet, hyp_path: Path) -> dict:
    """Translate the set's source (timed) into its target language, write the output to
    ``hyp_path``, score it against the reference."""
    src, ref = test.src, test.ref
    sources, refs = read_lines(src), read_lines(ref)
    if len(sources) != len(refs):  # before anything is translated
        raise ConfigError(f"{src} has {len(sources)} lines but {ref} has {len(refs)}")
    translator = translator.for_target(test.tgt_lang)
    start = time.perf_counter()
    hyps = translator.translate_lines(sources)
    seconds = time.perf_counter() - start
    hyp_path.parent.mkdir(parents=True, exist_ok=True)
    hyp_path.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    scores = score(hyps, refs)
    result = {key: scores[key] for key in SCORE_KEYS}
    result.update(seconds=seconds, hyp_file=hyp_path.name)
    return result


def measure_speed(translator: Translator, test: TestSet, name: str, beam_seconds: float) -> dict:
    """Sentences/s of greedy search (timed here) and of beam search (timed when scoring)."""
    sources = read_lines(test.src)
    translator = translator.for_target(test.tgt_lang)
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


def evaluate_run(spec: RunSpec, sets: TestSets) -> dict:
    """Test scores on every set and speed on the first; cached in ``evaluation.json``."""
    run = spec.run
    checkpoint = resolve_model_path(spec.run_dir)
    cache = _read_cache(run.evaluation, _cache_key(checkpoint, spec.cfg))
    primary = next(iter(sets))
    todo = [name for name in sets if name not in cache["test"]]
    if todo or cache.get("speed", {}).get("test_set") != primary:
        translator = load_translator(checkpoint, spec.cfg)
        first = sets[primary]
        warm = translator.for_target(first.tgt_lang)
        warm.translate_lines(read_lines(first.src)[:16])  # warm-up, not timed
        for name in todo:
            log.info("%s: translating %s (beam %d)", spec.name, name, BEAM)
            hyp_path = run.test_dir / f"{name}.beam{BEAM}.{sets[name].tgt_lang}"
            cache["test"][name] = score_test_set(translator, sets[name], hyp_path)
        seconds = cache["test"][primary]["seconds"]
        cache["speed"] = measure_speed(translator, first, primary, seconds)
        write_json(run.evaluation, cache)
    else:
        log.info("%s: reusing the test scores in %s", spec.name, run.evaluation)
    test = {name: dict(cache["test"][name]) for name in sets}
    for name, scores in test.items():  # cached as a name: run dirs can be moved
        scores["hyp_file"] = str(run.test_dir / scores["hyp_file"])
        scores.update(test_set=sets[name].name, direction=sets[name].direction)
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


def pick_sentence(lines: list[str]) -> int:
    """Index of the first line of 8 to 16 words (else the first non-empty one), for plots."""
    for i, line in enumerate(lines):
        if 8 <= len(line.split()) <= 16:
            return i
    return next((i for i, line in enumerate(lines) if line.strip()), 0)


def attention_plot(spec: RunSpec, sets: TestSets, out: Path) -> dict | None:
    """Heatmap of one test sentence for a backbone with attention; None for the others."""
    name, test = next(iter(sets.items()))
    lines = read_lines(test.src)
    index = pick_sentence(lines)
    translator = load_translator(resolve_model_path(spec.run_dir), spec.cfg)
    translator = translator.for_target(test.tgt_lang)
    try:
        amap = translator.attention(lines[index])
    except NoAttentionError as e:
        log.info("%s: no attention plot (%s)", spec.name, e)
        return None
    path = out / f"attention_{spec.name}.png"
    label = (
        spec.name if spec.name == spec.cfg.model.type else f"{spec.name} ({spec.cfg.model.type})"
    )
    title = f"{label}: {name}, line {index + 1}"
    plots.plot_attention(amap.weights, amap.src_pieces, amap.tgt_pieces, path, title)
    return {
        "file": path.name,
        "test_set": name,
        "line": index + 1,
        "source": lines[index],
        "translation": amap.translation,
    }
