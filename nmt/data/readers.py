"""Streaming readers for parallel corpora: plain or gzip files, and TSV files.

Corpora are read in blocks of a few MB and handed on in chunks of pairs, so memory stays
flat however large the files are. Lines follow :mod:`nmt.textio` exactly: split on
``\\n`` only, trailing ``\\r`` removed, a final newline does not make an empty last line.
Errors name the file and the line, as :mod:`nmt.textio` does, and are
:class:`~nmt.textio.CorpusError` (a usage error: one line, exit status 2).
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NoReturn

from nmt.data.sources import CorpusSource, is_gzip_name
from nmt.textio import CorpusError

BLOCK_BYTES = 1 << 22  # raw bytes read at a time


class LineReader:
    """The lines of one (optionally gzip-compressed) UTF-8 file, read block by block.

    ``consumed`` is how many bytes of the file on disk have been read (compressed bytes
    for gzip), for progress bars; ``lines_read`` counts the lines handed out so far.
    """

    def __init__(self, path: Path, block_bytes: int | None = None) -> None:
        self.path, self.block_bytes = Path(path), block_bytes or BLOCK_BYTES
        self.consumed = 0
        self.lines_read = 0

    def __iter__(self) -> Iterator[str]:
        return itertools.chain.from_iterable(self.blocks())

    def blocks(self) -> Iterator[list[str]]:
        """Lists of whole lines; a line split across two blocks is joined first."""
        tail = b""
        with self._open() as (raw, stream):
            while True:
                data = self._read(stream)
                self.consumed = raw.tell()
                if not data:
                    break
                data = tail + data
                cut = data.rfind(b"\n")
                if cut < 0:
                    tail = data
                    continue
                tail = data[cut + 1 :]
                yield self._decode(data[:cut])
        if tail:
            yield self._decode(tail)

    def _decode(self, data: bytes) -> list[str]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = self.lines_read + data[: e.start].count(b"\n") + 1
            raise CorpusError(f"{self.path}, line {line}: not valid UTF-8") from e
        lines = text.split("\n")
        if "\r" in text:
            lines = [line.rstrip("\r") for line in lines]
        self.lines_read += len(lines)
        return lines

    def _read(self, stream: BinaryIO) -> bytes:
        try:
            return stream.read(self.block_bytes)
        except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            raise CorpusError(
                f"{self.path}, after line {self.lines_read}: cannot read ({e}); "
                "is the file truncated or not gzip?"
            ) from e

    @contextlib.contextmanager
    def _open(self) -> Iterator[tuple[BinaryIO, BinaryIO]]:
        """(the file on disk, the stream of its text bytes: the file or a gzip reader)."""
        try:
            raw = open(self.path, "rb")  # noqa: SIM115 (closed below)
        except OSError as e:
            raise CorpusError(f"cannot read {self.path}: {e.strerror or e}") from e
        with raw:
            if not is_gzip_name(self.path):
                yield raw, raw
                return
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                yield raw, stream


@dataclass
class PairChunk:
    """Consecutive pairs of a corpus; ``first_line`` is the 1-based line of the first pair."""

    src: list[str]
    tgt: list[str]
    first_line: int

    def __len__(self) -> int:
        return len(self.src)


class PairReader:
    """Chunks of aligned pairs from a :class:`CorpusSource`, streamed.

    ``consumed``/``total_bytes`` measure progress through the files on disk.
    """

    def __init__(self, source: CorpusSource, chunk_pairs: int = 8192) -> None:
        self.source, self.chunk_pairs = source, chunk_pairs
        self.readers = [LineReader(p) for p in source.paths]
        self.total_bytes = sum(_size(p) for p in source.paths)
        self.pairs = 0

    @property
    def consumed(self) -> int:
        return sum(r.consumed for r in self.readers)

    def __iter__(self) -> Iterator[PairChunk]:
        chunks = self._tsv_chunks() if self.source.is_tsv else self._parallel_chunks()
        for chunk in chunks:
            self.pairs += len(chunk)
            yield chunk
        if self.pairs == 0:
            raise CorpusError(f"{self.source.paths[0]} is empty")

    def _parallel_chunks(self) -> Iterator[PairChunk]:
        src_reader, tgt_reader = self.readers
        src_lines, tgt_lines = iter(src_reader), iter(tgt_reader)
        line = 1
        while True:
            src = list(itertools.islice(src_lines, self.chunk_pairs))
            tgt = list(itertools.islice(tgt_lines, self.chunk_pairs))
            if len(src) != len(tgt):
                self._mismatch(line, src, tgt, src_lines, tgt_lines)
            if not src:
                return
            yield PairChunk(src, tgt, line)
            line += len(src)

    def _mismatch(self, line: int, src: list, tgt: list, src_rest, tgt_rest) -> NoReturn:
        """Count both files to the end, then name them with their line counts."""
        n_src = line - 1 + len(src) + sum(1 for _ in src_rest)
        n_tgt = line - 1 + len(tgt) + sum(1 for _ in tgt_rest)
        src_path, tgt_path = self.source.paths
        raise CorpusError(
            f"{src_path} has {n_src} lines but {tgt_path} has {n_tgt} (line "
            f"{min(n_src, n_tgt) + 1} has no partner): a parallel corpus needs one line per "
            "sentence on both sides"
        )

    def _tsv_chunks(self) -> Iterator[PairChunk]:
        (reader,) = self.readers
        lines, line = iter(reader), 1
        while block := list(itertools.islice(lines, self.chunk_pairs)):
            src, tgt = [], []
            for number, text in enumerate(block, line):
                fields = text.split("\t")
                if len(fields) != 2:
                    raise CorpusError(
                        f"{reader.path}, line {number}: expected source<TAB>target, "
                        f"found {len(fields) - 1} tabs"
                    )
                src.append(fields[0])
                tgt.append(fields[1])
            yield PairChunk(src, tgt, line)
            line += len(block)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as e:
        raise CorpusError(f"cannot read {path}: {e.strerror or e}") from e


def read_pairs(source: CorpusSource) -> tuple[list[str], list[str]]:
    """All pairs of a (small) split as two lists, e.g. the validation set."""
    src: list[str] = []
    tgt: list[str] = []
    for chunk in PairReader(source):
        src += chunk.src
        tgt += chunk.tgt
    return src, tgt
