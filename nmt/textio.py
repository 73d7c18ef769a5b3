"""Reading and writing text line by line, with errors that name the file and the line.

Every command reads its text through :func:`iter_lines` (streaming) or :func:`read_lines`
(a list built on it), so all of them treat files alike:

- ``-`` (or no path) means standard input for reading and standard output for writing,
  the Unix convention;
- lines are split on ``\\n`` only, and one ``\\r`` before it is dropped: a stray ``\\r`` or
  Unicode line separator inside a sentence must never shift the alignment between a
  source and its translation;
- bytes that are not UTF-8 are an error naming the file and the line (or, with
  ``errors="replace"``, become U+FFFD);
- a file whose name ends in ``.gz`` is decompressed on the fly (test sets often ship
  gzipped, as Multi30k's do).
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from nmt.errors import UsageError

STDIO = "-"  # the path that means standard input or output
MAX_LINE_BYTES = 1 << 20  # a longer line is cut while it is read (bounded memory)
log = logging.getLogger("nmt.textio")


class CorpusError(UsageError):
    """A corpus file that is missing, unreadable or does not line up with its pair."""


def is_stdio(path: str | Path | None) -> bool:
    """True for ``None`` and ``-``: standard input (reading) or standard output (writing)."""
    return path is None or str(path) == STDIO


def one_stdin(**paths: str | Path | None) -> None:
    """Refuse ``-`` for more than one of the named inputs: stdin can be read once."""
    dashes = [f"--{name}" for name, path in paths.items() if path is not None and is_stdio(path)]
    if len(dashes) > 1:
        raise UsageError(f"only one input can be stdin (-), got {' and '.join(dashes)}")


def display_name(path: str | Path | None) -> str:
    return "<stdin>" if is_stdio(path) else str(path)


def iter_lines(path: str | Path | None, errors: str = "strict", advice: str = "") -> Iterator[str]:
    """Stream the UTF-8 lines of ``path`` (``-`` or ``None``: stdin) without their newline.

    The file is opened at once, so a missing file is an error at the call, not at the
    first line read. ``advice`` is appended to the message about undecodable bytes
    (e.g. which flag reads them anyway).
    """
    if errors not in ("strict", "replace"):
        raise UsageError(f"errors must be strict or replace, not '{errors}'")
    if is_stdio(path):
        return _decoded(sys.stdin.buffer, "<stdin>", errors, advice, close=False)
    try:
        raw = _open_bytes(Path(path))
    except OSError as e:
        raise CorpusError(f"cannot read {path}: {e.strerror or e}") from e
    return _decoded(raw, str(path), errors, advice, close=True)


def _open_bytes(path: Path) -> BinaryIO:
    """The file's bytes, decompressed when its name ends in ``.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # noqa: SIM115 (closed by _decoded)
    return open(path, "rb")  # noqa: SIM115 (closed by _decoded)


def _decoded(raw: BinaryIO, name: str, errors: str, advice: str, close: bool) -> Iterator[str]:
    try:
        yield from _decoded_lines(raw, name, errors, advice)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise CorpusError(f"{name}: not a valid gzip file ({str(e) or 'truncated'})") from None
    finally:
        if close:
            raw.close()


def _bounded_lines(raw: BinaryIO, name: str) -> Iterator[bytes]:
    """The lines of ``raw`` with their newline, each cut to :data:`MAX_LINE_BYTES`.

    Read in bounded pieces, so one endless line (2 GB of NUL bytes in a small .gz) costs
    at most ``MAX_LINE_BYTES`` of memory: its first piece stands for it, with a warning.
    """
    warned = False
    while line := raw.readline(MAX_LINE_BYTES):
        if len(line) == MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := raw.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass  # skip the rest of the line, piece by piece
            if not warned:
                log.warning("%s: lines longer than %d MiB are cut", name, MAX_LINE_BYTES >> 20)
                warned = True
            line = _whole_characters(line)
        yield line


def _whole_characters(data: bytes) -> bytes:
    """``data`` without a UTF-8 character cut in two at its end."""
    end = len(data)
    while end > 0 and len(data) - end < 4 and data[end - 1] & 0xC0 == 0x80:
        end -= 1  # continuation bytes
    if end > 0 and data[end - 1] >= 0xC0:
        return data[: end - 1]  # the lead byte of the cut character
    return data


def _decoded_lines(raw: BinaryIO, name: str, errors: str, advice: str) -> Iterator[str]:
    for number, line in enumerate(_bounded_lines(raw, name), 1):
        try:
            text = line.decode("utf-8", errors=errors)
        except UnicodeDecodeError:
            hint = f" ({advice})" if advice else ""
            raise CorpusError(f"{name}, line {number}: not valid UTF-8{hint}") from None
        yield text[:-1] if text.endswith("\n") else text


def strip_cr(line: str) -> str:
    """The line without one trailing ``\\r`` (files written with Windows line ends)."""
    return line[:-1] if line.endswith("\r") else line


def read_lines(path: str | Path | None) -> list[str]:
    """All UTF-8 lines of a file (``-``: stdin) without ``\\n`` or a trailing ``\\r``."""
    return [strip_cr(line) for line in iter_lines(path)]


def count_lines(path: str | Path) -> int:
    """Number of lines of a file (a last line without ``\\n`` counts), without decoding."""
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def read_parallel(src_path: Path, tgt_path: Path) -> tuple[list[str], list[str]]:
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise CorpusError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: a parallel "
            "corpus needs one line per sentence on both sides"
        )
    if not src:
        raise CorpusError(f"{src_path} is empty")
    return src, tgt


@contextlib.contextmanager
def open_output(path: str | Path | None) -> Iterator[TextIO]:
    """Write to ``path`` (``-`` or ``None``: stdout), replacing the file only on success.

    A file is written to ``PATH.part`` and renamed when the block ends without an error,
    so an interrupted or failed command never leaves half an output under the real name.
    """
    if is_stdio(path):
        yield sys.stdout
        return
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            yield f
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (the folder's entry itself)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
