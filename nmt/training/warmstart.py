"""Fine-tuning (warm start): a new run that begins with another run's weights.

``nmt train CONFIG --init RUN_OR_CKPT --out NEW_RUN`` takes the weights *and the
tokenizer* of the checkpoint (a run directory means its best checkpoint), so the new
run's vocabulary is the parent's by construction; the config's tokenizer section
names no model file any more (its sampling keys still apply). Everything else starts
afresh, as in JoeyNMT's ``reset_*`` options or fairseq's ``--finetune-from-model``:
optimizer moments, learning-rate schedule (warmup included), best score, step and
epoch counters, so ``train.max_steps`` and ``train.max_minutes`` count from the start
of the new run. The parent is named in ``RUN/parent.json`` (path, SHA256, step) and in
the first line of the new run's metrics.jsonl; its files are only read.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from nmt.artifacts.checkpoint import atomic_write, load_checkpoint, resolve_model_path
from nmt.artifacts.rundir import RunDir
from nmt.config import Config, ConfigError, to_dict
from nmt.data.store.manifest import sha256_file
from nmt.models.base import Seq2Seq
from nmt.tokenizer import Tokenizer

log = logging.getLogger("nmt.training")

# Model keys that change training, not the shape of the network: they may differ.
_NOT_ARCHITECTURE = ("dropout", "attention_dropout")
# Tokenizer keys that describe the vocabulary: taken from the parent.
_VOCABULARY = ("type", "vocab_size", "joint", "character_coverage")


class ArchitectureMismatch(ConfigError):
    """The config's model is not the checkpoint's: its weights cannot be loaded."""


@dataclass
class WarmStart:
    """The parent checkpoint of a fine-tuning run, loaded."""

    path: Path  # the checkpoint file
    sha256: str
    model: Seq2Seq
    tok: Tokenizer
    cfg: Config  # the parent's config
    meta: dict  # the parent's checkpoint metadata (step, valid_bleu, ...)

    def record(self) -> dict:
        """What ``parent.json`` and the first metrics line say about the parent."""
        return {
            "init_from": str(self.path.resolve()),
            "init_sha256": self.sha256,
            "init_step": self.meta.get("step"),
            "init_valid_bleu": self.meta.get("valid_bleu"),
        }


def load_warm_start(path: Path) -> WarmStart:
    """Load the checkpoint (or a run directory's best) that a new run starts from."""
    file = resolve_model_path(path)
    model, tok, cfg, meta = load_checkpoint(file)
    return WarmStart(file, sha256_file(file), model, tok, cfg, meta)


def adopt_parent(cfg: Config, parent: WarmStart, run: RunDir) -> Config:
    """``cfg`` with the parent's vocabulary; refuse a model that is not the parent's.

    The tokenizer lives in the new run directory from its first step, and the saved
    config points there, so ``--resume`` of the new run finds it.
    """
    differing = architecture_differences(cfg, parent.cfg)
    if differing:
        raise ArchitectureMismatch(
            f"the config's model differs from the one in {parent.path} ("
            + ", ".join(f"{k}: {old} -> {new}" for k, old, new in differing)
            + "): --init loads weights into the same architecture only"
        )
    ignored = [
        f"tokenizer.{k}"
        for k in _VOCABULARY
        if getattr(cfg.tokenizer, k) != getattr(parent.cfg.tokenizer, k)
    ]
    if ignored:
        log.warning(
            "--init: ignoring the config's %s (the checkpoint's differ)", ", ".join(ignored)
        )
    vocabulary = {k: getattr(parent.cfg.tokenizer, k) for k in _VOCABULARY}
    tokenizer = dataclasses.replace(cfg.tokenizer, model=str(run.tokenizer_prefix), **vocabulary)
    return dataclasses.replace(cfg, tokenizer=tokenizer)


def architecture_differences(cfg: Config, parent: Config) -> list[tuple[str, object, object]]:
    """(key, parent's value, config's value) for every architecture key that differs."""
    if cfg.model.type != parent.model.type:
        return [("model.type", parent.model.type, cfg.model.type)]
    kind = cfg.model.type
    new, old = to_dict(cfg)["model"][kind], to_dict(parent)["model"][kind]
    return [
        (f"model.{kind}.{k}", old.get(k), new.get(k))
        for k in sorted(old.keys() | new.keys())
        if k not in _NOT_ARCHITECTURE and old.get(k) != new.get(k)
    ]


def describe(parent: WarmStart) -> None:
    log.info(
        "fine-tuning from %s (step %s, sha256 %s): weights and tokenizer (%d subwords) from "
        "the checkpoint, the config's tokenizer section is ignored (its sampling keys apply); "
        "optimizer, schedule, best score and budgets start afresh",
        parent.path,
        parent.meta.get("step", "?"),
        parent.sha256[:12],
        parent.tok.tgt_vocab_size,
    )


def write_parent(run: RunDir, parent: WarmStart) -> None:
    """``RUN/parent.json``: which checkpoint, by path and content, the run started from."""
    text = json.dumps(parent.record(), indent=2) + "\n"
    atomic_write(run.parent, lambda tmp: tmp.write_text(text, encoding="utf-8"))
