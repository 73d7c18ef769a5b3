"""Where a split's store lives, whether it is up to date, and (re)building it if not.

Location: ``<data.dir>/nmt-store/<split>.<src>-<tgt>.<key>/`` by default, or under
``data.store_dir``. Beside the data rather than in a run directory, because a store
belongs to its corpus: every run on that corpus (and every process of a run) shares one
copy, on disk and in the page cache, and deleting the data folder deletes its store; a
read-only data folder needs ``data.store_dir``. The folder is visible (not a dot-folder)
so that the disk space it takes is seen. The ``key`` hashes the tokenizer model(s), the
corpus files' absolute paths and ``max_len``: a store made with another tokenizer sits
in another folder and is never opened for this one, and two corpora never share a folder
even under one ``data.store_dir`` (a moved corpus is built again). Old stores are not
removed automatically; deleting ``nmt-store`` only costs a rebuild.

A lock file (``flock``) serialises the check and the build, so that two commands that
start together on one machine build a store once.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmt.config import DataConfig
from nmt.data.sources import CorpusSource, resolve_split
from nmt.data.store.build import build_store
from nmt.data.store.manifest import (
    STORE_FORMAT,
    StoreError,
    array_problem,
    identity,
    input_change,
    read_manifest,
    sha256_bytes,
    store_key,
    write_manifest,
)
from nmt.locking import file_lock
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


def plan_store(d: DataConfig, split: str, tok: Tokenizer) -> StorePlan:
    source = resolve_split(d, split)
    ident = identity(source, tokenizer_digests(tok), d.max_len, tok.target)
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
    if manifest["format"] != STORE_FORMAT:
        return f"store format {manifest['format']}, this version reads {STORE_FORMAT}"
    if manifest["identity"] != plan.identity:
        return "made with another tokenizer, other files or another max_len"
    inputs = []
    for recorded, path in zip(manifest["inputs"], plan.source.paths, strict=True):
        reason, record = input_change(recorded, path, full=hash_inputs)
        if reason:
            return reason
        inputs.append(record)
    for name, entry in manifest["arrays"].items():
        if reason := array_problem(plan.directory, name, entry, full=hash_arrays):
            return reason
    if inputs != manifest["inputs"]:  # files hashed again and unchanged: hash less next time
        with contextlib.suppress(OSError):  # a read-only store stays as it is
            write_manifest(plan.directory, {**manifest, "inputs": inputs})
    return None


def store_lock(directory: Path) -> contextlib.AbstractContextManager[OSError | None]:
    """Hold ``<directory>.lock`` exclusively (other processes wait). Where it cannot be
    made (a read-only data folder), yields the error instead: a ready store can still be
    used there, but none can be built."""
    return file_lock(directory.with_name(directory.name + ".lock"))


def ensure_store(
    data: DataConfig,
    split: str,
    tok: Tokenizer,
    *,
    hash_inputs: bool = False,
    hash_arrays: bool = True,
    rebuild: bool = False,
) -> Path:
    """The folder of ``split``'s up-to-date store, built first if missing or stale."""
    plan = plan_store(data, split, tok)
    with store_lock(plan.directory) as unwritable:
        reason = "rebuild asked for" if rebuild else store_problem(plan, hash_inputs, hash_arrays)
        if reason is None:
            log.info("data store %s is up to date", plan.directory)
            return plan.directory
        if unwritable is not None:
            raise StoreError(
                f"cannot build the data store in {plan.directory.parent} ({reason}): "
                f"{unwritable.strerror or unwritable}; set data.store_dir to a writable folder"
            )
        level = logging.INFO if reason == "not built yet" else logging.WARNING
        log.log(level, "building data store %s (%s)", plan.directory, reason)
        build_store(plan.source, tok, plan.max_len, plan.directory, plan.identity, data.workers)
    return plan.directory
