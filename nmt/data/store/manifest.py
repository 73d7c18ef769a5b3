"""The store's manifest: what a store was built from, and the checks that it still holds.

``manifest.json`` records the format version, the SHA256 of the tokenizer model(s), the
size, modification time and SHA256 of every corpus file, ``max_len``, the counts, and
the dtype, length and SHA256 of every array file. A store is used only when all of it
matches; anything else is a *reason* to rebuild.

Hashing the corpus at every start: SHA256 runs at about 1.7 GB/s here (SHA-NI), so a
4M-pair corpus (about 550 MB of text) costs some 0.4 s, a 30M-pair one several seconds,
more on a cold disk. So a corpus file whose size and modification time (ns) are those
recorded is taken as unchanged without being read, the way ``make`` and git's index do;
any other file is hashed, and a file that was merely touched keeps its store (its new
time is recorded). To leave no "racy" window, the time is only trusted when the file was
already more than two seconds old when it was hashed: a later edit of the same size then
shows as a new modification time even on file systems with 2-second timestamps.
``nmt data prepare`` hashes every file regardless.

The array files are always checked in full by the process that builds or verifies the
store (size, then SHA256: about 0.2 s for a 4M-pair store), so a truncated or corrupted
store is rebuilt and never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from nmt.data.sources import CorpusSource
from nmt.errors import UsageError

STORE_FORMAT = 1
MANIFEST = "manifest.json"
RACY_NS = 2_000_000_000  # a file this much older than its hash has a trustworthy mtime
_BLOCK = 1 << 20


class StoreError(UsageError):
    """A data store that cannot be written or read (the message says what to do)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint(path: Path) -> dict[str, Any]:
    """What the manifest records of one corpus file (hashing it)."""
    hashed_at = time.time_ns()
    st = path.stat()
    return {
        "path": str(path.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "hashed_at_ns": hashed_at,
        "sha256": sha256_file(path),
    }


def input_change(
    recorded: dict[str, Any], path: Path, full: bool
) -> tuple[str | None, dict[str, Any]]:
    """(why ``path`` no longer matches ``recorded``, or None; the record to keep: a new
    one with the file's current time when it was hashed and found unchanged)."""
    if str(path.resolve()) != recorded.get("path"):
        return f"{path} is not the file the store was built from", recorded
    hashed_at = time.time_ns()
    st = path.stat()
    if st.st_size != recorded["size"]:
        return f"{path} changed size", recorded
    old_enough = recorded["mtime_ns"] < recorded["hashed_at_ns"] - RACY_NS
    if not full and old_enough and st.st_mtime_ns == recorded["mtime_ns"]:
        return None, recorded
    if sha256_file(path) != recorded["sha256"]:
        return f"{path} changed", recorded
    return None, {**recorded, "mtime_ns": st.st_mtime_ns, "hashed_at_ns": hashed_at}


def identity(
    source: CorpusSource, tokenizer: dict[str, str], max_len: int, tag: str | None = None
) -> dict[str, Any]:
    """What the store must have been made from: format, tokenizer, files, filter, and the
    target language whose tag starts every source (multilingual models only)."""
    found = {
        "format": STORE_FORMAT,
        "tokenizer": tokenizer,
        "inputs": [str(p.resolve()) for p in source.paths],
        "max_len": max_len,
    }
    return found if tag is None else {**found, "target_tag": tag}


def store_key(ident: dict[str, Any]) -> str:
    """A short hash naming the store's directory: another tokenizer, another directory."""
    return sha256_bytes(json.dumps(ident, sort_keys=True).encode())[:16]


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The parsed manifest, or None when it is missing or unreadable."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically (temporary file, fsync, rename)."""
    tmp = directory / (MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / MANIFEST)


def array_problem(directory: Path, name: str, entry: dict[str, Any], full: bool) -> str | None:
    """Why array file ``name`` is unusable (missing, wrong size, wrong SHA256), or None."""
    path = directory / entry["file"]
    try:
        size = path.stat().st_size
    except OSError:
        return f"{name} is missing"
    expected = entry["count"] * int(entry["itemsize"])
    if size != expected:
        return f"{path.name} has {size} bytes instead of {expected} (truncated?)"
    if full and sha256_file(path) != entry["sha256"]:
        return f"{path.name} does not match its checksum (corrupted)"
    return None
