"""Which files a split of the config names: two parallel files or one TSV file.

A split is found in ``data.dir`` in one of two layouts (``data.format``):

- ``plain``: ``<split>.<src_lang>`` and ``<split>.<tgt_lang>``, one sentence per line,
  each file optionally gzip-compressed (``<split>.<lang>.gz``);
- ``tsv``: one file ``<split>``, ``<split>.tsv`` or ``<split>.tsv.gz`` whose lines are
  ``source<TAB>target``.

``auto`` (the default) takes a TSV file when the split names one (``data.train:
corpus.tsv``) or when there is no plain pair but a ``<split>.tsv(.gz)``, so every config
written before TSV support reads exactly the files it read before.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from nmt.config import DataConfig
from nmt.languages import Direction
from nmt.textio import CorpusError

FORMATS = ("auto", "plain", "tsv")


@dataclass(frozen=True)
class CorpusSource:
    """The file(s) holding one split: ``(src, tgt)`` parallel files or ``(tsv,)``."""

    paths: tuple[Path, ...]

    @property
    def is_tsv(self) -> bool:
        return len(self.paths) == 1

    def describe(self) -> str:
        return ", ".join(str(p) for p in self.paths)


def is_gzip_name(path: Path) -> bool:
    return path.name.endswith(".gz")


def _is_tsv_name(name: str) -> bool:
    return name.endswith((".tsv", ".tsv.gz"))


def resolve_split(data: DataConfig, split: str) -> CorpusSource:
    """The files of ``split`` under ``data.dir`` (a :class:`CorpusError` if there are none).

    ``auto`` takes, in this order: a split that names a ``.tsv(.gz)`` file; the plain
    layout; ``<split>.tsv(.gz)``. So existing plain corpora read as before.
    """
    if data.format not in FORMATS:
        raise CorpusError(f"data.format: '{data.format}' is not one of {', '.join(FORMATS)}")
    base = Path(data.dir)
    if data.format == "tsv":
        names = (split, f"{split}.tsv", f"{split}.tsv.gz")
        if tsv := _first_file(base, names):
            return CorpusSource((tsv,))
        raise CorpusError(
            f"no TSV file for split '{split}' in {base} (looked for {', '.join(names)})"
        )
    if data.format == "auto" and _is_tsv_name(split) and (base / split).is_file():
        return CorpusSource((base / split,))
    plain = [_first_file(base, (f"{split}.{lang}", f"{split}.{lang}.gz")) for lang in _langs(data)]
    if all(plain):
        return CorpusSource(tuple(plain))
    if data.format == "auto" and (tsv := _first_file(base, (f"{split}.tsv", f"{split}.tsv.gz"))):
        return CorpusSource((tsv,))
    missing = base / f"{split}.{_langs(data)[plain.index(None)]}"
    raise CorpusError(f"{missing} does not exist (nor {missing.name}.gz)")


def _langs(data: DataConfig) -> tuple[str, str]:
    return data.src_lang, data.tgt_lang


def _first_file(base: Path, names: tuple[str, ...]) -> Path | None:
    return next((base / n for n in names if (base / n).is_file()), None)


def direction_data(data: DataConfig, direction: Direction) -> DataConfig:
    """The data section of one direction of a multilingual config (``data.directions``):
    its two languages, two-file splits. A bilingual config's is ``data`` itself."""
    if not data.directions:
        return data
    fmt = "plain"  # a TSV file names no languages: checked by the config, forced here
    return dataclasses.replace(data, src_lang=direction.src, tgt_lang=direction.tgt, format=fmt)
