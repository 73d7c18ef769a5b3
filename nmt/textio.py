"""Reading text files line by line, with errors that name the file and the line.

Lines are split on ``\n`` only: a stray ``\r`` or Unicode line separator inside a
sentence must never shift the alignment between a source and its translation.
"""

from __future__ import annotations

from pathlib import Path

from nmt.errors import UsageError


class CorpusError(UsageError):
    """A corpus file that is missing, unreadable or does not line up with its pair."""


def read_lines(path: str | Path) -> list[str]:
    """UTF-8 lines without their newline; a clear error for missing or non-UTF-8 files."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise CorpusError(f"{path}, line {line}: not valid UTF-8") from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


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
