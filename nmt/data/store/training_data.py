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
from nmt.data.readers import PairReader, read_pairs
from nmt.data.sources import CorpusSource, is_gzip_name, resolve_split
from nmt.data.store.corpus import StoreCorpus
from nmt.data.store.ensure import ensure_store
from nmt.errors import UsageError
from nmt.tokenizer import Tokenizer, train_tokenizer

log = logging.getLogger("nmt.data.store")


@dataclass
class TrainingData:
    """What training reads (:class:`nmt.training.setup.Corpora` adds subword sampling)."""

    train: StoreCorpus  # memory-mapped training pairs
    valid: StoreCorpus  # every validation pair, in memory (validation loss)
    valid_src: list[str]  # the first ``train.valid_max_sentences`` (validation BLEU)
    valid_ref: list[str]


def load_training_data(cfg: Config, tok: Tokenizer, hash_arrays: bool = True) -> TrainingData:
    """Open the training split's store (building it when missing or stale) and read the
    validation split. Several processes: training calls this on rank 0 first (with
    ``hash_arrays``), and the others then find the store up to date (without)."""
    directory = ensure_store(cfg.data, cfg.data.train, tok, hash_arrays=hash_arrays)
    return with_validation(cfg, tok, StoreCorpus.open(directory))


def with_validation(cfg: Config, tok: Tokenizer, train: StoreCorpus) -> TrainingData:
    """``train`` with the validation split: every pair encoded (validation loss), and the
    first ``train.valid_max_sentences`` as text (validation BLEU)."""
    d = cfg.data
    if len(train) == 0:
        raise UsageError(
            f"no training pair is left: every pair of the '{d.train}' split is empty or "
            f"longer than data.max_len={d.max_len} subwords (check the data or raise "
            "data.max_len)"
        )
    va_src, va_tgt = read_pairs(resolve_split(d, d.valid))
    valid = StoreCorpus.from_sequences(tok.encode_src(va_src), tok.encode_tgt(va_tgt))
    n = cfg.train.valid_max_sentences or len(va_src)
    log.info("data: %d training pairs, %d validation pairs", len(train), len(valid))
    return TrainingData(train, valid, va_src[:n], va_tgt[:n])


def prepare_tokenizer(cfg: Config) -> Tokenizer:
    """Load the config's SentencePiece model, training it on the training split if missing.

    Compressed or TSV training data is first streamed into plain text files, which
    SentencePiece reads.
    """
    prefix, t = cfg.tokenizer_prefix(), cfg.tokenizer
    src_path, tgt_path = Tokenizer.paths(prefix, t.joint)
    if src_path.is_file() and tgt_path.is_file():
        return Tokenizer.load(prefix, t.joint)
    source = resolve_split(cfg.data, cfg.data.train)
    with plain_text_files(source) as (src_file, tgt_file):
        return train_tokenizer(
            prefix, [src_file], [tgt_file], t.vocab_size, t.type, t.joint, t.character_coverage
        )


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
