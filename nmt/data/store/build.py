"""Building a store: stream the corpus, encode it on all cores, write the arrays atomically.

The main process reads the corpus in chunks of pairs and hands them to a pool of
encoding processes, at most ``2 x processes`` chunks in flight so that memory stays
flat (``concurrent.futures``: it reports a worker that died, where
``multiprocessing.Pool`` would wait for it forever). Results come back in order and
are appended to the array files, hashed on the way. The store is written into a
temporary directory beside its final place, every file is fsync'ed, and the directory
is renamed into place: a build that is interrupted leaves no store that could be
mistaken for a complete one.

Processes, not threads: SentencePiece's batch encoding can use threads, but it returns
Python lists built under the GIL, and on this machine ``num_threads=2`` encoded no
faster than one thread; separate processes scale. They are started with ``spawn``: the
caller may be a training process whose threads (gloo, OpenMP) must not be forked.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nmt.data.readers import PairReader
from nmt.data.sources import CorpusSource
from nmt.data.store.encode import ChunkEncoder, EncodedChunk, encode_in_worker, init_worker
from nmt.data.store.manifest import STORE_FORMAT, fingerprint, write_manifest
from nmt.errors import RuntimeFailure
from nmt.progress import console
from nmt.textio import fsync_dir
from nmt.tokenizer import Tokenizer

log = logging.getLogger("nmt.data.store")


class BuildFailure(RuntimeFailure):
    """The store could not be built although its input was fine."""


SMALL_INPUT_BYTES = 8 << 20  # below this, encoding in this process beats starting a pool
CHUNK_PAIRS = 8192


def default_processes(requested: int, total_bytes: int) -> int:
    """``requested`` encoding processes; 0 = one per available core (1 for small inputs)."""
    if requested > 0:
        return requested
    if total_bytes < SMALL_INPUT_BYTES:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


class ArrayWriter:
    """Appends arrays of one dtype to a raw binary file, hashing the bytes on the way."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self.path, self.dtype = path, np.dtype(dtype)
        self.file = open(path, "wb")  # noqa: SIM115 (closed by close())
        self.hash = hashlib.sha256()
        self.count = 0

    def write(self, values: np.ndarray) -> None:
        data = np.ascontiguousarray(values, dtype=self.dtype).tobytes()
        self.file.write(data)
        self.hash.update(data)
        self.count += len(values)

    def close(self) -> dict[str, Any]:
        """Flush to disk (fsync) and describe the file for the manifest."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        return {
            "file": self.path.name,
            "dtype": self.dtype.name,
            "itemsize": self.dtype.itemsize,
            "count": self.count,
            "sha256": self.hash.hexdigest(),
        }


class SideWriter:
    """One language side: flat ids, per-pair lengths, and offsets (``N + 1``, from 0)."""

    def __init__(self, directory: Path, side: str, dtype: np.dtype) -> None:
        self.side = side
        self.ids = ArrayWriter(directory / f"{side}.ids.bin", dtype)
        self.lengths = ArrayWriter(directory / f"{side}.lengths.bin", np.int32)
        self.offsets = ArrayWriter(directory / f"{side}.offsets.bin", np.int64)
        self.offsets.write(np.zeros(1, dtype=np.int64))
        self.total = 0

    def write(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        ends = self.total + np.cumsum(lengths, dtype=np.int64)  # (kept,)
        self.ids.write(ids)
        self.lengths.write(lengths)
        self.offsets.write(ends)
        if len(ends):
            self.total = int(ends[-1])

    def close(self) -> dict[str, dict[str, Any]]:
        return {
            f"{self.side}.{name}": writer.close()
            for name, writer in (
                ("ids", self.ids),
                ("lengths", self.lengths),
                ("offsets", self.offsets),
            )
        }


class Counts:
    """Pairs read, kept and dropped, tokens, and length histograms over all read pairs."""

    def __init__(self) -> None:
        self.read = self.kept = self.empty = self.too_long = 0
        self.src_tokens = self.tgt_tokens = 0
        self.histograms = {"src": np.zeros(0, np.int64), "tgt": np.zeros(0, np.int64)}

    def add(self, chunk: EncodedChunk) -> None:
        self.read += chunk.read
        self.kept += len(chunk.src_lengths)
        self.empty += chunk.empty
        self.too_long += chunk.too_long
        self.src_tokens += len(chunk.src_ids)
        self.tgt_tokens += len(chunk.tgt_ids)
        for side, hist in (("src", chunk.src_histogram), ("tgt", chunk.tgt_histogram)):
            self.histograms[side] = _add_padded(self.histograms[side], hist)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: getattr(self, k)
            for k in ("read", "kept", "empty", "too_long", "src_tokens", "tgt_tokens")
        }
        out["histograms"] = {
            side: {str(n): int(c) for n, c in enumerate(hist) if c}
            for side, hist in self.histograms.items()
        }
        return out


def _add_padded(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(max(len(a), len(b)), dtype=np.int64)
    out[: len(a)] += a
    out[: len(b)] += b
    return out


def build_store(
    source: CorpusSource,
    tok: Tokenizer,
    max_len: int,
    directory: Path,
    identity: dict[str, Any],
    processes: int = 0,
    chunk_pairs: int = CHUNK_PAIRS,
) -> dict[str, Any]:
    """Build the store of ``source`` in ``directory`` (replacing one that is there).

    ``processes``: encoding processes, 0 = one per core; ``identity``: what the store is
    made from (:func:`nmt.data.store.manifest.identity`), recorded in its manifest.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{directory.name}-", dir=directory.parent))
    try:
        manifest = _write_store(
            tmp, directory, source, tok, max_len, identity, processes, chunk_pairs
        )
        fsync_dir(tmp)
        _swap_into_place(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _write_store(
    tmp: Path,
    directory: Path,
    source: CorpusSource,
    tok: Tokenizer,
    max_len: int,
    identity: dict[str, Any],
    processes: int,
    chunk_pairs: int,
) -> dict[str, Any]:
    inputs = [fingerprint(p) for p in source.paths]  # before reading: a later edit shows
    encoder = ChunkEncoder(tok, max_len)
    writers = [SideWriter(tmp, "src", encoder.src_dtype), SideWriter(tmp, "tgt", encoder.tgt_dtype)]
    reader = PairReader(source, chunk_pairs)
    counts, start = Counts(), time.monotonic()
    processes = default_processes(processes, reader.total_bytes)
    with _BuildProgress(reader, directory.name.split(".")[0]) as progress:
        for chunk in _encoded(reader, tok, max_len, processes):
            writers[0].write(chunk.src_ids, chunk.src_lengths)
            writers[1].write(chunk.tgt_ids, chunk.tgt_lengths)
            counts.add(chunk)
            progress.update(counts.read)
    seconds = time.monotonic() - start
    arrays = {**writers[0].close(), **writers[1].close()}
    manifest = {
        "format": STORE_FORMAT,
        "identity": identity,
        "inputs": inputs,
        "counts": counts.as_dict(),
        "arrays": arrays,
        "built": {
            "at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "seconds": round(seconds, 3),
            "pairs_per_s": round(counts.read / max(seconds, 1e-9)),
            "processes": processes,
        },
    }
    write_manifest(tmp, manifest)
    _log_counts(source, counts, max_len, seconds)
    return manifest


def _encoded(
    reader: PairReader, tok: Tokenizer, max_len: int, processes: int
) -> Iterator[EncodedChunk]:
    """The reader's chunks encoded, in order: here, or by ``processes`` worker processes."""
    if processes <= 1:
        encoder = ChunkEncoder(tok, max_len)
        for chunk in reader:
            yield encoder(chunk.src, chunk.tgt)
        return
    init_args = (tok.src_proto, None if tok.joint else tok.tgt_proto, max_len, tok.target)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, spawn, init_worker, init_args) as pool:
        pending: collections.deque[Future] = collections.deque()
        try:
            for chunk in reader:
                pending.append(pool.submit(encode_in_worker, chunk.src, chunk.tgt))
                if len(pending) > 2 * processes:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool as e:
            raise BuildFailure(
                "an encoding process of the store build died (out of memory?); "
                "set data.workers lower"
            ) from e
        finally:
            for future in pending:  # on an error: do not wait for queued chunks
                future.cancel()


def _log_counts(source: CorpusSource, counts: Counts, max_len: int, seconds: float) -> None:
    log.info(
        "%s: %d pairs read, %d kept in %.1f s (%.0f pairs/s)",
        source.describe(),
        counts.read,
        counts.kept,
        seconds,
        counts.read / max(seconds, 1e-9),
    )
    if counts.kept < counts.read:
        log.info(
            "dropped %d of %d pairs (%d empty, %d longer than %d subwords)",
            counts.read - counts.kept,
            counts.read,
            counts.empty,
            counts.too_long,
            max_len,
        )


def _swap_into_place(tmp: Path, directory: Path) -> None:
    """Rename the finished store to ``directory``; an old store there is removed after."""
    old = None
    if directory.exists():
        old = directory.with_name(f".old-{directory.name}-{os.getpid()}")
        os.rename(directory, old)
    os.rename(tmp, directory)
    fsync_dir(directory.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class _BuildProgress:
    """A rich bar over the corpus bytes read, with pairs and pairs/s."""

    def __init__(self, reader: PairReader, label: str) -> None:
        self.reader, self.start = reader, time.monotonic()
        self.progress = Progress(
            TextColumn(f"[bold]store[/] {label}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[pairs]:,} pairs  {task.fields[rate]:,.0f} pairs/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.progress.add_task(
            "build", total=max(reader.total_bytes, 1), pairs=0, rate=0.0
        )

    def __enter__(self) -> _BuildProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, pairs: int) -> None:
        rate = pairs / max(time.monotonic() - self.start, 1e-9)
        self.progress.update(self.task, completed=self.reader.consumed, pairs=pairs, rate=rate)
