"""Where a split's store lives, whether it is up to date, and (re)building it if not.

Location: ``<data.dir>/nmt-store/<split>.<src>-<tgt>.<key>/`` by default, or under
``data.store_dir``. Beside the data, because a store belongs to its corpus: every run on
that corpus (and every process of a run) shares one copy, on disk and in the page cache,
and it goes wherever the data goes; a read-only data folder needs ``data.store_dir``.
The folder is visible (not a dot-folder) so that the disk space it takes is seen. The
``key`` hashes the tokenizer model(s), the corpus paths and ``max_len``: a store made with
another tokenizer sits in another folder and is never opened for this one. Old stores
are not removed automatically; deleting ``nmt-store`` only costs a rebuild.

A lock file (``flock``) serialises the check and the build, so that two commands that
start together on one machine build a store once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmt.config import Config, DataConfig
from nmt.data.sources import CorpusSource, resolve_split
from nmt.data.store.build import build_store
from nmt.data.store.manifest import (
    FORMAT,
    StoreError,
    array_problem,
    identity,
    input_change,
    read_manifest,
    sha256_bytes,
    store_key,
    write_manifest,
)
from nmt.tokenizer import Tokenizer

log = logging.getLogger("nmt.data.store")

STORE_FOLDER = "nmt-store"


def store_root(data: DataConfig) -> Path:
    return Path(data.store_dir) if data.store_dir else Path(data.dir) / STORE_FOLDER


def tokenizer_digests(tok: Tokenizer) -> dict[str, str]:
    return {"src": sha256_bytes(tok.src_proto), "tgt": sha256_bytes(tok.tgt_proto)}


@dataclass(frozen=True)
class StorePlan:
    """The store one split needs: its input files, folder, and identity."""

    source: CorpusSource
    directory: Path
    identity: dict[str, Any]
    max_len: int


def plan_store(cfg: Config, split: str, tok: Tokenizer) -> StorePlan:
    d = cfg.data
    source = resolve_split(d, split)
    ident = identity(source, tokenizer_digests(tok), d.max_len)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(split).name)
    folder = f"{name}.{d.src_lang}-{d.tgt_lang}.{store_key(ident)}"
    return StorePlan(source, store_root(d) / folder, ident, d.max_len)


def store_problem(plan: StorePlan, hash_inputs: bool, hash_arrays: bool) -> str | None:
    """Why the store at ``plan.directory`` cannot be used as it is, or None if it can.

    ``hash_inputs``: hash every corpus file even when its size and time are unchanged;
    ``hash_arrays``: check every array file's SHA256 (sizes are always checked).
    """
    manifest = read_manifest(plan.directory)
    if manifest is None:
        return "not built yet" if not plan.directory.exists() else "manifest missing or unreadable"
    try:
        return _manifest_problem(plan, manifest, hash_inputs, hash_arrays)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        return f"malformed manifest ({e!r})"


def _manifest_problem(
    plan: StorePlan, manifest: dict[str, Any], hash_inputs: bool, hash_arrays: bool
) -> str | None:
    if manifest["format"] != FORMAT:
        return f"store format {manifest['format']}, this version reads {FORMAT}"
    if manifest["identity"] != plan.identity:
        return "made with another tokenizer, other files or another max_len"
    refresh = False
    for recorded, path in zip(manifest["inputs"], plan.source.paths, strict=True):
        reason, touched = input_change(recorded, path, full=hash_inputs)
        if reason:
            return reason
        refresh |= touched
    for name, entry in manifest["arrays"].items():
        if reason := array_problem(plan.directory, name, entry, full=hash_arrays):
            return reason
    if refresh:  # only modification times moved: record them, hash less next time
        manifest["inputs"] = _refreshed(manifest["inputs"], plan.source.paths)
        write_manifest(plan.directory, manifest)
    return None


def _refreshed(inputs: list[dict[str, Any]], paths: tuple[Path, ...]) -> list[dict[str, Any]]:
    now = time.time_ns()  # the files were hashed just now
    return [
        {**rec, "mtime_ns": p.stat().st_mtime_ns, "hashed_at_ns": now}
        for rec, p in zip(inputs, paths)
    ]


@contextlib.contextmanager
def store_lock(directory: Path) -> Iterator[None]:
    """Hold ``<directory>.lock`` exclusively (other processes wait)."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        lock = open(directory.with_name(directory.name + ".lock"), "a")  # noqa: SIM115
    except OSError as e:
        raise StoreError(
            f"cannot write the data store in {directory.parent}: {e.strerror or e} "
            "(set data.store_dir to a writable folder)"
        ) from e
    with lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        yield


def ensure_store(
    cfg: Config,
    split: str,
    tok: Tokenizer,
    *,
    hash_inputs: bool = False,
    hash_arrays: bool = True,
    rebuild: bool = False,
) -> Path:
    """The folder of ``split``'s up-to-date store, built first if missing or stale."""
    plan = plan_store(cfg, split, tok)
    with store_lock(plan.directory):
        reason = "rebuild asked for" if rebuild else store_problem(plan, hash_inputs, hash_arrays)
        if reason is None:
            log.info("data store %s is up to date", plan.directory)
            return plan.directory
        level = logging.INFO if reason == "not built yet" else logging.WARNING
        log.log(level, "building data store %s (%s)", plan.directory, reason)
        build_store(plan.source, tok, plan.max_len, plan.directory, plan.identity, cfg.data.workers)
    return plan.directory
