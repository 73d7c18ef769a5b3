"""``nmt translate -i BIG -o OUT --resume``: translation of huge files that survives a kill.

The output is written to ``OUT.part`` one chunk of input lines at a time (the
translator's chunk: sorted by length, translated in batches, written in order). After
each chunk the file is flushed and fsynced, then a small sidecar ``OUT.part.progress``
is replaced atomically; it records

- ``lines``: input lines translated and safely written,
- ``bytes``: the size of ``OUT.part`` at that point, and a hash of its last bytes,
- fingerprints of the input (size, hash of its first MiB) and of the model and options
  (the glossary and prefix files' contents among them).

A new run with ``--resume`` truncates ``OUT.part`` to ``bytes`` (dropping a torn last
write), skips ``lines`` input lines and goes on. It resumes only at chunk boundaries, so
every chunk holds the same lines as in an uninterrupted run and is batched the same way:
the finished ``OUT`` is byte-identical whatever the moments the runs were killed.
A different input, model or option is refused with a one-line error. Memory stays
bounded by one chunk, however long the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from nmt.artifacts.checkpoint import resolve_model_path
from nmt.errors import Interrupted, UsageError
from nmt.inference.ct2 import is_export
from nmt.inference.documents import DocumentOptions
from nmt.inference.files import BAD_UTF8_ADVICE, LineLayer, line_layer, output_lines
from nmt.inference.guided import Guidance, GuideOptions
from nmt.inference.load import TranslateOptions, make_translator
from nmt.inference.translator import Translator
from nmt.interrupts import exit_status
from nmt.progress import LinesPerSecond, console, progress_hidden
from nmt.textio import count_lines, fsync_dir, is_stdio, iter_lines

log = logging.getLogger("nmt.translate")

FORMAT = 1  # version of the progress file
HEAD_BYTES = 1 << 20  # the input fingerprint hashes this much of its start
TAIL_BYTES = 1 << 16  # the progress checks this much of OUT.part's end


def progress_path(part: Path) -> Path:
    return part.with_name(part.name + ".progress")


def file_fingerprint(path: Path) -> dict:
    """Size and SHA-256 of the first MiB (and of the last, for a model file)."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(HEAD_BYTES))
        if size > HEAD_BYTES:
            f.seek(max(HEAD_BYTES, size - HEAD_BYTES))
            digest.update(f.read())
    return {"size": size, "sha256": digest.hexdigest()}


def model_fingerprint(models: Path | list[Path]) -> list[dict]:
    """The files a translation depends on: checkpoints, or the files of an export."""
    paths = models if isinstance(models, list) else [models]
    found = []
    for path in map(Path, paths):
        if is_export(path):
            files = sorted(p for p in path.rglob("*") if p.is_file())
        else:
            files = [resolve_model_path(path)]
        found += [{"name": f.name, **file_fingerprint(f)} for f in files]
    return found


def options_fingerprint(
    options: TranslateOptions,
    errors: str,
    documents: DocumentOptions | None = None,
    guide: GuideOptions | None = None,
) -> dict:
    """Everything besides the input and the model that decides the output's bytes: the
    search, markup and splitting, the columns, and the glossary and prefix files' contents
    (a resumed run with other prefixes would mix two translations)."""
    guide = guide or GuideOptions()
    files = {
        name: file_fingerprint(path) if path is not None else None
        for name, path in (("glossary", guide.glossary), ("prefix", guide.prefix))
    }
    return {
        **dataclasses.asdict(options),
        "errors": errors,
        **dataclasses.asdict(documents or DocumentOptions()),
        **files,
        "scores": guide.scores,
        "alignments": guide.alignments,
    }


def _tail_hash(f: BinaryIO, end: int) -> str:
    start = max(0, end - TAIL_BYTES)
    f.seek(start)
    return hashlib.sha256(f.read(end - start)).hexdigest()


def write_progress(path: Path, record: dict) -> None:
    """Replace ``path`` atomically and durably (a kill leaves the old or the new record)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_progress(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        log.warning("%s is unreadable: starting over", path)
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def resume_point(part: Path, record: dict | None, expected: dict) -> tuple[int, int]:
    """(input lines done, bytes of ``part`` to keep) from a previous run's record.

    Raises :class:`UsageError` when the record belongs to another input, model or
    options; (0, 0) when there is nothing to continue.
    """
    if record is None or not part.exists():
        return 0, 0
    differ = (("input", "a different input file"), ("model", "a different model"))
    for key, what in (*differ, ("options", "different options")):
        if record.get(key) != expected[key]:
            raise UsageError(
                f"{part} was started with {what}: run the same command as before, "
                "or delete it to start over"
            )
    lines, size = int(record["lines"]), int(record["bytes"])
    with open(part, "rb") as f:
        if part.stat().st_size < size or _tail_hash(f, size) != record["tail"]:
            log.warning("%s does not hold what %s recorded: starting over", part, record)
            return 0, 0
    return lines, size


def run_resumable(
    model: Path | list[Path],
    input: Path | None,
    output: Path | None,
    options: TranslateOptions,
    errors: str = "strict",
    documents: DocumentOptions | None = None,
    guide: GuideOptions | None = None,
) -> None:
    """Translate ``input`` to ``output`` so that an interrupted run can be continued;
    ``documents`` (markup, long lines) and ``guide`` (glossary, prefixes, columns) as for
    :func:`nmt.inference.files.run_translate`. Each chunk's prefixes are those of its own
    input lines, so a resumed run stays in step with the prefix file."""
    if is_stdio(input) or is_stdio(output):
        raise UsageError("--resume needs files: give -i INPUT and -o OUTPUT (not stdin/stdout)")
    if options.sampling is not None:
        raise UsageError("--resume cannot continue --sample: its draws depend on all before")
    if errors not in ("strict", "replace"):
        raise UsageError(f"--errors must be strict or replace, not '{errors}'")
    input, output = Path(input), Path(output)
    if not input.is_file():
        raise UsageError(f"cannot read {input}: no such file")
    part = output.with_name(output.name + ".part")
    expected = {
        "input": file_fingerprint(input),
        "model": model_fingerprint(model),
        "options": options_fingerprint(options, errors, documents, guide),
    }
    done, size = resume_point(part, read_progress(progress_path(part)), expected)
    guidance = Guidance.read(guide or GuideOptions(), input)  # bad files fail fast
    translator = make_translator(model, options)
    layer = line_layer(translator, documents or DocumentOptions(), options.nbest, guide, guidance)
    total = None if input.suffix == ".gz" else count_lines(input)  # gzip: not counted
    if done:
        log.info("resuming %s at line %d", part, done + 1)
    lines = itertools.islice(iter_lines(input, errors, BAD_UTF8_ADVICE), done, None)
    with open(part, "r+b" if part.exists() else "w+b") as f:
        f.truncate(size)
        f.seek(size)
        done = _translate_chunks(translator, layer, lines, f, part, expected, done, total)
    os.replace(part, output)
    progress_path(part).unlink(missing_ok=True)
    fsync_dir(output.parent)
    log.info("translated %d lines", done)


@contextlib.contextmanager
def resume_hint(output: Path | None) -> Iterator[None]:
    """Around a translation without ``--resume``: an interrupted one says how to keep
    its progress next time (its ``.part`` is deleted, as ever)."""
    try:
        yield
    except KeyboardInterrupt as e:
        if is_stdio(output):
            raise
        raise Interrupted(
            exit_status(e) - 128,
            f"interrupted: {output} not written; with --resume, an interrupted translation "
            "keeps its output and continues where it stopped when run again",
        ) from None


def _translate_chunks(
    translator: Translator,
    layer: LineLayer | None,
    lines: Iterator[str],
    f: BinaryIO,
    part: Path,
    expected: dict,
    done: int,
    total: int | None,
) -> int:
    """Translate and append chunk after chunk, each made durable before the next."""
    try:
        with _progress(total, done) as advance:
            while chunk := list(itertools.islice(lines, translator.chunk_lines)):
                f.write(_chunk_text(translator, layer, chunk, done).encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
                done += len(chunk)
                end = f.tell()
                record = {"format": FORMAT, "lines": done, "bytes": end, **expected}
                record["tail"] = _tail_hash(f, end)
                f.seek(end)
                write_progress(progress_path(part), record)
                advance(len(chunk))
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: what is recorded stays resumable
        raise Interrupted(
            exit_status(e) - 128,
            f"interrupted: {part} holds {done}{f' of {total}' if total else ''} lines; "
            "run the same command with --resume to continue",
        ) from None
    return done


def _chunk_text(
    translator: Translator, layer: LineLayer | None, chunk: list[str], first: int
) -> str:
    """The output lines of ``chunk`` (input lines ``first``... of the file), exactly as
    ``nmt translate`` writes them."""
    return "".join(f"{text}\n" for text in output_lines(translator, layer, chunk, first))


class _progress:
    """A progress bar (terminal only) with lines/s and time left; calls back with lines."""

    def __init__(self, total: int | None, done: int) -> None:
        hidden = progress_hidden() or not console.is_terminal
        cols = (
            TextColumn("[bold]translate[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            LinesPerSecond(),
            TimeRemainingColumn(),
        )
        self.bar = Progress(*cols, console=console, transient=True, disable=hidden)
        self.task = self.bar.add_task("translate", total=total, completed=done)

    def __enter__(self):
        self.bar.__enter__()
        return lambda n: self.bar.advance(self.task, n)

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)
