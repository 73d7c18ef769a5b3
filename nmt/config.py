"""Typed configuration: dataclasses loaded from YAML, with strict keys and dotted overrides.

One YAML file describes a whole experiment. ``model.type`` picks the backbone; every
other section (data, tokenizer, training, search) is shared by all backbones.
An unknown or misspelt key is an error that names the key and suggests the closest
valid one, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nmt.errors import UsageError


class ConfigError(UsageError):
    """A configuration problem that the user can fix; the message says what and where."""


@dataclass
class DataConfig:
    dir: str = "data/multi30k"  # folder holding plain-text files named <split>.<lang>
    src_lang: str = "de"
    tgt_lang: str = "en"
    train: str = "train"  # split names: <dir>/<split>.<lang>[.gz], or a TSV file (see format)
    valid: str = "val"
    test: str = "test_2016_flickr"
    max_len: int = 100  # training pairs longer than this (in subwords) are dropped
    format: str = "auto"  # plain: <split>.<lang>[.gz]; tsv: <split>[.tsv][.gz] with
    #   source<TAB>target lines; auto: tsv where the split names a .tsv(.gz) file, else plain
    store_dir: str = ""  # binary data store of the training split; "" = <dir>/nmt-store
    workers: int = 0  # processes encoding the store; 0 = one per core


@dataclass
class TokenizerConfig:
    model: str = (
        ""  # file prefix of the SentencePiece model(s); default: <data.dir>/spm.<src>-<tgt>...
    )
    type: str = "bpe"  # bpe | unigram
    vocab_size: int = 8000
    joint: bool = True  # one vocabulary for both languages (needed for tied src/tgt embeddings)
    character_coverage: float = 1.0
    # Subword regularization (Kudo 2018; BPE-dropout, Provilkov et al. 2020): > 0 re-samples
    # the segmentation of the training pairs every epoch (validation and test never).
    # unigram: alpha smooths the sampling distribution; bpe: alpha is the merge-dropout rate.
    sample_alpha: float = 0.0
    nbest_size: int = -1  # unigram: sample among the n best segmentations; -1 = all of them


@dataclass
class LSTMConfig:
    """Sutskever et al. (2014): the final encoder state is the decoder's only context."""

    emb_dim: int = 256
    hidden: int = 512
    layers: int = 2
    dropout: float = 0.2
    reverse_source: bool = True  # Sutskever et al. 2014, sec. 3.3: reversing the source helps


@dataclass
class AttentionConfig:
    """RNN encoder-decoder with attention (Bahdanau et al. 2014; Luong et al. 2015)."""

    cell: str = "gru"  # rnn (Elman) | gru | lstm
    emb_dim: int = 256
    hidden: int = 512
    layers: int = 1
    bidirectional: bool = True  # bidirectional encoder
    attention: str = "bahdanau"  # bahdanau (additive) | dot | general (Luong)
    input_feeding: bool = True  # Luong et al. 2015, sec. 3.3
    dropout: float = 0.3


@dataclass
class TransformerConfig:
    """Vaswani et al. (2017)."""

    d_model: int = 256
    heads: int = 4
    ff_dim: int = 1024
    encoder_layers: int = 3
    decoder_layers: int = 3
    dropout: float = 0.1
    attention_dropout: float = 0.1
    norm: str = "pre"  # pre | post (post is the original paper's placement)
    tie_embeddings: bool = True  # share src emb, tgt emb and output projection (needs joint vocab)
    max_positions: int = 1024


@dataclass
class ModelConfig:
    type: str = "transformer"  # lstm | attention | transformer
    lstm: LSTMConfig = field(default_factory=LSTMConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)


@dataclass
class TrainConfig:
    seed: int = 1
    batch_tokens: int = 4096  # target tokens per batch (token-based batching)
    max_steps: int = 0  # 0 = no limit
    max_epochs: int = 0  # 0 = no limit
    max_minutes: float = 0.0  # wall-clock budget; 0 = no limit
    optimizer: str = "adam"  # adam | adamw
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.0
    schedule: str = "noam"  # noam (warmup + inverse sqrt) | budget | plateau | constant
    warmup_steps: int = 1000
    plateau_factor: float = 0.5
    plateau_patience: int = 2  # validations without improvement before the lr drops
    min_lr: float = 1e-6
    label_smoothing: float = 0.1
    clip_norm: float = 1.0  # 0 = no clipping
    precision: str = "bf16"  # fp32 | bf16 | fp16 (autocast; fp16 is CUDA only, with loss scaling)
    accumulate: int = 1  # batches per update and process; tokens/update = batch_tokens*this*procs
    keep_checkpoints: int = 5  # step checkpoints kept in RUN_DIR/ckpt for `nmt average`; 0 = none
    average_last: int = 0  # at the end, average the last N step checkpoints; kept if better
    threads: int = 0  # torch intra-op threads; 0 = all cores
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    max_bad_steps: int = 10  # stop after this many consecutive NaN/inf losses
    valid_every: int = 500  # steps between validations
    valid_bleu: bool = True  # greedy BLEU on the validation set at each validation
    valid_max_sentences: int = 0  # 0 = the whole validation set
    patience: int = 0  # early stopping: validations without BLEU gain; 0 = off
    log_every: int = 50
    tensorboard: str = "auto"  # TensorBoard event files in RUN_DIR/tensorboard: auto | true | false


@dataclass
class SearchConfig:
    beam: int = 5  # 1 = greedy
    nbest: int = 1
    length_penalty: float = 1.0  # alpha of Wu et al. (2016), eq. 14; 0 = none
    max_len_a: float = 1.5  # max output length = a * source length + b
    max_len_b: int = 10
    batch_size: int = 64  # sentences per batch when translating files


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    def tokenizer_prefix(self) -> str:
        """Where the SentencePiece model lives (prefix without ``.model``)."""
        if self.tokenizer.model:
            return self.tokenizer.model
        t, d = self.tokenizer, self.data
        kind = "joint" if t.joint else "sep"
        return str(Path(d.dir) / f"spm.{d.src_lang}-{d.tgt_lang}.{t.type}{t.vocab_size}.{kind}")


CHOICES: dict[str, tuple[str, ...]] = {
    "data.format": ("auto", "plain", "tsv"),
    "tokenizer.type": ("bpe", "unigram"),
    "model.type": ("lstm", "attention", "transformer"),
    "model.attention.cell": ("rnn", "gru", "lstm"),
    "model.attention.attention": ("bahdanau", "dot", "general"),
    "model.transformer.norm": ("pre", "post"),
    "train.optimizer": ("adam", "adamw"),
    "train.schedule": ("noam", "budget", "plateau", "constant"),
    "train.precision": ("fp32", "bf16", "fp16"),
    "train.tensorboard": ("auto", "true", "false"),
}


# --- YAML ----------------------------------------------------------------------------------------
# PyYAML follows YAML 1.1, where yes/no/on/off are booleans: `src_lang: no` (Norwegian) would
# become False. Configs are read the YAML 1.2 way (only true/false are booleans), and every
# boolean or number keeps the text it was written as, so a field declared `str` gets that text
# (`test: 2016` stays "2016", `version: 1.10` stays "1.10").
_BOOL_TAG = "tag:yaml.org,2002:bool"
YAML11_BOOLS = {"yes": True, "no": False, "on": True, "off": False, "true": True, "false": False}


@dataclass(frozen=True)
class Written:
    """A YAML boolean or number together with its source text."""

    value: bool | int | float
    text: str

    def __repr__(self) -> str:  # error messages show the value, not the wrapper
        return repr(self.value)


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans whose booleans and numbers keep their text."""


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _keeping_text(construct: Any) -> Any:
    def construct_written(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Written:
        return Written(construct(loader, node), node.value)

    return construct_written


for _tag, _construct in [
    (_BOOL_TAG, yaml.SafeLoader.construct_yaml_bool),
    ("tag:yaml.org,2002:int", yaml.SafeLoader.construct_yaml_int),
    ("tag:yaml.org,2002:float", yaml.SafeLoader.construct_yaml_float),
]:
    ConfigLoader.add_constructor(_tag, _keeping_text(_construct))


def _build(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys and wrong types."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        got = type(raw.value if isinstance(raw, Written) else raw).__name__
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {got}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{path}'{hint}")
        kwargs[key] = _coerce(hints[key], value, path)
    obj = cls(**kwargs)
    return obj


# String keys whose choices are auto | true | false: a YAML boolean means its text.
AUTO_SWITCHES = ("train.tensorboard",)
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce(hint: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the type hint ``hint``; convert where it is lossless."""
    if path in AUTO_SWITCHES and isinstance(value, bool):
        return "true" if value else "false"
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{path}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{path}: unsupported union type")  # not used by the schema
    if isinstance(value, Written):
        if hint is str:  # `src_lang: no`, `test: 2016`: the text as written, not a bool or int
            return value.text
        value = value.value
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is bool and isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, str) and value.lower() in YAML11_BOOLS:
        return YAML11_BOOLS[value.lower()]
    if hint is int and is_number and isinstance(value, int):
        return int(value)
    if hint is float and is_number:
        return float(value)
    if hint is float and isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        return float(value)  # `5e-4`: a float in YAML 1.2, a string to PyYAML
    if hint is str and isinstance(value, str):
        return value
    tname = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{path}: expected {tname}, got {value!r}")


# Numeric bounds that types alone cannot express.
POSITIVE = (
    "tokenizer.vocab_size data.max_len train.batch_tokens train.valid_every train.log_every "
    "train.accumulate search.beam search.nbest search.batch_size "
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


def validate(cfg: Config) -> Config:
    """Choice, range and consistency checks; the error names the offending key."""
    for path, allowed in CHOICES.items():
        value = get_path(cfg, path)
        if value not in allowed:
            raise ConfigError(f"{path}: '{value}' is not one of {', '.join(allowed)}")
    _check_ranges(cfg)
    _check_consistency(cfg)
    _check_device(cfg.train)
    return cfg


def _check_ranges(cfg: Config) -> None:
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


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` -> (["section", "key"], the value parsed as in a config file)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, value = text.split("=", 1)
    try:
        parsed = yaml.load(value, Loader=ConfigLoader) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply dotted overrides to a raw YAML mapping (validated later by :func:`from_dict`)."""
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{text}': '{k}' is not a section")
        node[keys[-1]] = value
    return raw


def from_dict(raw: dict) -> Config:
    return validate(_build(Config, raw, ""))


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config, apply ``section.key=value`` overrides, validate."""
    raw: dict = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror or e}") from e
        try:
            raw = yaml.load(text, Loader=ConfigLoader) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return from_dict(apply_overrides(raw, overrides or []))


def to_dict(cfg: Config) -> dict:
    """Plain mapping (tuples as lists) for YAML/JSON."""

    def plain(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    return plain(dataclasses.asdict(cfg))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
