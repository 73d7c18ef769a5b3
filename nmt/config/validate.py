"""Checks that types alone cannot express: choices, ranges, finite numbers, sizes a
machine can hold, and keys that must agree with each other. Each error names its key."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from nmt.config.schema import CHOICES, Config, TokenizerConfig, TrainConfig
from nmt.errors import ConfigError
from nmt.languages import check_directions

# Numeric bounds that types alone cannot express.
POSITIVE = (
    "tokenizer.vocab_size data.max_len train.batch_tokens train.valid_every train.log_every "
    "train.accumulate search.beam search.nbest search.batch_size data.sampling_temperature "
    "model.lstm.hidden model.lstm.layers model.lstm.emb_dim "
    "model.attention.hidden model.attention.layers model.attention.emb_dim "
    "model.transformer.d_model model.transformer.heads model.transformer.ff_dim "
    "model.transformer.encoder_layers model.transformer.decoder_layers"
).split()
NON_NEGATIVE = (
    "data.workers train.max_steps train.max_epochs train.max_minutes train.lr train.warmup_steps "
    "train.clip_norm train.patience train.threads train.keep_checkpoints train.average_last "
    "tokenizer.sample_alpha "
    "search.length_penalty search.max_len_a search.max_len_b"
).split()
PROBABILITIES = (
    "train.label_smoothing model.lstm.dropout model.attention.dropout "
    "model.transformer.dropout model.transformer.attention_dropout"
).split()


# Upper bounds: far beyond any model this toolkit trains, low enough that a typo (an extra
# zero or three) is an error naming the key instead of an allocation that takes the machine.
MAXIMA = {
    "model.transformer.d_model": 16_384,
    "model.transformer.ff_dim": 65_536,
    "model.transformer.heads": 256,
    "model.transformer.encoder_layers": 128,
    "model.transformer.decoder_layers": 128,
    "model.transformer.max_positions": 1 << 16,  # checkpoints are loaded with the same bound
    "model.lstm.emb_dim": 16_384,
    "model.lstm.hidden": 16_384,
    "model.lstm.layers": 128,
    "model.attention.emb_dim": 16_384,
    "model.attention.hidden": 16_384,
    "model.attention.layers": 128,
    "tokenizer.vocab_size": 1_000_000,
    "train.seed": 2**32 - 1,  # NumPy's and Python's seeders take it, torch's too
    "train.threads": 4096,
    "search.beam": 1024,
}


def validate(cfg: Config) -> Config:
    """Choice, range and consistency checks; the error names the offending key."""
    for path, allowed in CHOICES.items():
        value = get_path(cfg, path)
        if value not in allowed:
            raise ConfigError(f"{path}: '{value}' is not one of {', '.join(allowed)}")
    _check_finite(cfg, "")
    _check_ranges(cfg)
    _check_consistency(cfg)
    _check_device(cfg.train)
    return cfg


def _check_finite(section: Any, where: str) -> None:
    """No NaN or infinity anywhere: `train.lr=.nan` passes every comparison below."""
    for f in dataclasses.fields(section):
        value, path = getattr(section, f.name), f"{where}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_finite(value, f"{path}.")
        for number in value if isinstance(value, tuple) else (value,):
            if isinstance(number, float) and not math.isfinite(number):
                raise ConfigError(f"{path} must be a finite number, got {number}")


def _check_ranges(cfg: Config) -> None:
    for path, most in MAXIMA.items():
        if get_path(cfg, path) > most:
            raise ConfigError(f"{path} must be at most {most:,}, got {get_path(cfg, path):,}")
    if cfg.train.seed < 0:
        raise ConfigError(f"train.seed must not be negative, got {cfg.train.seed}")
    for path in POSITIVE:
        if get_path(cfg, path) <= 0:
            raise ConfigError(f"{path} must be positive, got {get_path(cfg, path)}")
    for path in NON_NEGATIVE:
        if get_path(cfg, path) < 0:
            raise ConfigError(f"{path} must not be negative, got {get_path(cfg, path)}")
    for path in PROBABILITIES:
        if not 0.0 <= get_path(cfg, path) < 1.0:
            raise ConfigError(f"{path} must be in [0, 1), got {get_path(cfg, path)}")


def _check_consistency(cfg: Config) -> None:
    if cfg.search.nbest > cfg.search.beam:
        raise ConfigError(
            f"search.nbest ({cfg.search.nbest}) exceeds search.beam ({cfg.search.beam})"
        )
    t = cfg.model.transformer
    if t.d_model % t.heads:
        raise ConfigError(
            f"model.transformer.d_model ({t.d_model}) must divide by heads ({t.heads})"
        )
    tr = cfg.train
    if tr.schedule == "budget" and not (tr.max_steps or tr.max_minutes):
        raise ConfigError(
            "train.schedule budget decays to the end of the budget: "
            "set train.max_steps or train.max_minutes"
        )
    if tr.average_last > tr.keep_checkpoints:
        raise ConfigError(
            f"train.average_last ({tr.average_last}) exceeds train.keep_checkpoints "
            f"({tr.keep_checkpoints}): only kept checkpoints can be averaged"
        )
    _check_sampling(cfg.tokenizer)
    if cfg.model.type == "transformer" and t.tie_embeddings and not cfg.tokenizer.joint:
        raise ConfigError("model.transformer.tie_embeddings needs tokenizer.joint: true")
    if cfg.data.directions:
        _check_multilingual(cfg)


def _check_multilingual(cfg: Config) -> None:
    """``data.directions``: valid and distinct, a joint tokenizer (it holds the language
    tags), two-file splits (a TSV file names no languages), no subword sampling (yet)."""
    check_directions(cfg.data.directions)
    if not cfg.tokenizer.joint:
        raise ConfigError("data.directions needs tokenizer.joint: true (one vocabulary, tags)")
    if cfg.data.format == "tsv":
        raise ConfigError("data.directions reads <split>.<lang> files: data.format tsv is not")
    if cfg.tokenizer.sample_alpha > 0:
        raise ConfigError("tokenizer.sample_alpha does not combine with data.directions yet")


def _check_sampling(t: TokenizerConfig) -> None:
    if t.nbest_size != -1 and t.nbest_size < 2:
        raise ConfigError(
            f"tokenizer.nbest_size must be -1 (all) or at least 2, got {t.nbest_size}"
        )
    if t.type == "bpe" and t.sample_alpha >= 1.0:
        raise ConfigError(
            f"tokenizer.sample_alpha is the BPE merge-dropout rate: it must be below 1, "
            f"got {t.sample_alpha}"
        )


def _check_device(t: TrainConfig) -> None:
    """A device name torch understands; fp16 only where it can run (CUDA)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", t.device):
        raise ConfigError(f"train.device: '{t.device}' is not one of auto, cpu, cuda, cuda:N")
    if t.precision == "fp16" and t.device == "cpu":
        raise ConfigError("train.precision fp16 needs a CUDA device; use bf16 on CPU")


def get_path(cfg: Any, path: str) -> Any:
    obj = cfg
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj
