"""What training calls: the tokenizer, then the training store and the validation set.

Under ``torchrun``, training calls :func:`load_training_data` on rank 0 first, which checks
(and if needed builds) the store while the other ranks wait; then every rank maps the same
files, so a machine holds one copy of the corpus however many processes train on it.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nmt.config import Config
from nmt.data.readers import LineReader, PairReader, read_pairs
from nmt.data.sources import CorpusSource, direction_data, is_gzip_name, resolve_split
from nmt.data.store.corpus import StoreCorpus
from nmt.data.store.ensure import ensure_store
from nmt.data.store.mixture import join_corpora
from nmt.errors import UsageError
from nmt.languages import all_languages, config_directions, target_languages
from nmt.tokenizer import Tokenizer, train_tokenizer

log = logging.getLogger("nmt.data.store")


@dataclass
class ValidText:
    """The validation text of one direction (validation BLEU)."""

    direction: str  # "de-en"
    tgt_lang: str  # the language translated into
    src: list[str]  # the first ``train.valid_max_sentences`` sources
    ref: list[str]  # their references


@dataclass
class TrainingData:
    """What training reads (:class:`nmt.training.setup.Corpora` adds subword sampling)."""

    train: StoreCorpus  # memory-mapped training pairs (every direction's)
    valid: StoreCorpus  # every validation pair of every direction, in memory (loss)
    valid_text: list[ValidText]  # per direction (one for a bilingual config)


def load_training_data(cfg: Config, tok: Tokenizer, hash_arrays: bool = True) -> TrainingData:
    """Open the training split's store (building it when missing or stale) and read the
    validation split; a multilingual config's, one store per direction, joined. Several
    processes: training calls this on rank 0 first (with ``hash_arrays``), and the others
    then find the stores up to date (without)."""
    check_tags(cfg, tok)
    parts = []
    for direction in config_directions(cfg.data):
        d = direction_data(cfg.data, direction)
        directory = ensure_store(d, d.train, tok.for_target(d.tgt_lang), hash_arrays=hash_arrays)
        parts.append(StoreCorpus.open(directory))
    return with_validation(cfg, tok, parts)


def with_validation(cfg: Config, tok: Tokenizer, parts: list[StoreCorpus]) -> TrainingData:
    """The training pairs of each direction (``parts``, in ``config_directions`` order)
    with the validation split: every pair encoded (validation loss), and the first
    ``train.valid_max_sentences`` of each direction as text (validation BLEU)."""
    directions = config_directions(cfg.data)
    valid_src: list[list[int]] = []
    valid_tgt: list[list[int]] = []
    texts = []
    for direction, part in zip(directions, parts, strict=True):
        d = direction_data(cfg.data, direction)
        if len(part) == 0:
            which = f" of {direction.name}" if cfg.data.directions else ""
            raise UsageError(
                f"no training pair is left: every pair{which} of the '{d.train}' split is "
                f"empty or longer than data.max_len={d.max_len} subwords (check the data or "
                "raise data.max_len)"
            )
        va_src, va_tgt = read_pairs(resolve_split(d, d.valid))
        valid_src += tok.for_target(d.tgt_lang).encode_src(va_src)
        valid_tgt += tok.encode_tgt(va_tgt)
        n = cfg.train.valid_max_sentences or len(va_src)
        texts.append(ValidText(direction.name, d.tgt_lang, va_src[:n], va_tgt[:n]))
    valid = StoreCorpus.from_sequences(valid_src, valid_tgt)
    if cfg.data.directions:
        train = join_corpora(parts, [d.name for d in directions], cfg.data.sampling_temperature)
    else:
        (train,) = parts
    log.info("data: %d training pairs, %d validation pairs", len(train), len(valid))
    return TrainingData(train, valid, texts)


def check_tags(cfg: Config, tok: Tokenizer) -> None:
    """A multilingual config needs a tokenizer with a tag for each of its target languages
    (a bilingual tokenizer would train a model that cannot tell the directions apart)."""
    targets = target_languages(config_directions(cfg.data)) if cfg.data.directions else []
    if missing := [lang for lang in targets if lang not in tok.tags]:
        raise UsageError(
            f"the tokenizer has no language tag for {', '.join(missing)} (data.directions): "
            "set tokenizer.model to a new prefix to train one with the tags"
        )


def prepare_tokenizer(cfg: Config) -> Tokenizer:
    """Load the config's SentencePiece model, training it on the training split if missing.

    Compressed or TSV training data is first streamed into plain text files, which
    SentencePiece reads. A multilingual model's is joint, trained on each language's
    training text once, with a tag for each target language (:mod:`nmt.tokenizer`).
    """
    prefix, t = cfg.tokenizer_prefix(), cfg.tokenizer
    src_path, tgt_path = Tokenizer.paths(prefix, t.joint)
    if src_path.is_file() and tgt_path.is_file():
        tok = Tokenizer.load(prefix, t.joint)
        check_tags(cfg, tok)
        return tok
    if cfg.data.directions:
        return _train_multilingual(cfg, prefix)
    source = resolve_split(cfg.data, cfg.data.train)
    with plain_text_files(source) as (src_file, tgt_file):
        return train_tokenizer(
            prefix, [src_file], [tgt_file], t.vocab_size, t.type, t.joint, t.character_coverage
        )


def _train_multilingual(cfg: Config, prefix: str) -> Tokenizer:
    """The joint tokenizer of ``data.directions``: every language's text, the tags."""
    directions, t = config_directions(cfg.data), cfg.tokenizer
    files: dict[str, Path] = {}  # language -> its training file
    for direction in directions:
        d = direction_data(cfg.data, direction)
        src, tgt = resolve_split(d, d.train).paths
        files.setdefault(direction.src, src)
        files.setdefault(direction.tgt, tgt)
    inputs = [files[lang] for lang in all_languages(directions)]
    languages = tuple(target_languages(directions))
    with plain_files(inputs) as plain:
        return train_tokenizer(
            prefix, plain, [], t.vocab_size, t.type, True, t.character_coverage, languages
        )


@contextlib.contextmanager
def plain_files(paths: list[Path]) -> Iterator[list[Path]]:
    """``paths`` as uncompressed files (gzip ones decompressed into a temporary folder)."""
    if not any(is_gzip_name(p) for p in paths):
        yield paths
        return
    with tempfile.TemporaryDirectory(prefix="nmt-text-") as tmp:
        plain = []
        for i, path in enumerate(paths):
            if not is_gzip_name(path):
                plain.append(path)
                continue
            plain.append(Path(tmp) / f"{i}.txt")
            with open(plain[-1], "w", encoding="utf-8") as out:
                for block in LineReader(path).blocks():
                    out.writelines(line + "\n" for line in block)
        yield plain


@contextlib.contextmanager
def plain_text_files(source: CorpusSource) -> Iterator[tuple[Path, Path]]:
    """``source`` as two uncompressed one-sentence-per-line files (temporary if needed)."""
    if not source.is_tsv and not any(is_gzip_name(p) for p in source.paths):
        yield source.paths[0], source.paths[1]
        return
    with tempfile.TemporaryDirectory(prefix="nmt-text-") as tmp:
        paths = Path(tmp) / "src.txt", Path(tmp) / "tgt.txt"
        with (
            open(paths[0], "w", encoding="utf-8") as f_src,
            open(paths[1], "w", encoding="utf-8") as f_tgt,
        ):
            for chunk in PairReader(source):
                f_src.writelines(line + "\n" for line in chunk.src)
                f_tgt.writelines(line + "\n" for line in chunk.tgt)
        yield paths
