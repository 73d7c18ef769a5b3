"""An epoch's batch plan as files: written once per run, read by every training process.

    RUN/plans/epoch-<E>/order.bin     (N,) int32: the epoch's pair indices, batch after batch
    RUN/plans/epoch-<E>/batches.npy   (B, 3) int64: start and stop in order.bin, and target
                                      tokens, of each batch in the epoch's order
    RUN/plans/epoch-<E>/plan.json     what it was planned from: format, the corpus's
                                      lengths (fingerprint), pairs, batch_tokens, seed, epoch

``order.bin`` is written piece by piece while the pairs are sorted
(:func:`nmt.data.store.batches.plan_epoch`), so the planning process never holds it.
Readers take each batch from it with ``pread`` when they build the batch
(:mod:`nmt.data.store.fileread`): a process holds the batch table (24 bytes a batch,
3 MB for 30M pairs) and nothing per pair. Raw, like the store's arrays, because it is
written out of order; its length is in ``plan.json``.

A plan is written into a temporary folder, fsync'ed and renamed into place, so a plan
folder is complete or absent; one whose ``plan.json`` does not match what is asked for
is planned again. Writing an epoch's plan deletes the other epochs' (a run keeps one: 4
bytes a pair).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from nmt.data.store.batches import EpochPlan, epoch_size, plan_epoch
from nmt.data.store.corpus import StoreCorpus
from nmt.data.store.fileread import FileArray
from nmt.textio import fsync_dir

PLAN_FORMAT = 1


def plan_key(corpus: StoreCorpus, batch_tokens: int, seed: int, epoch: int) -> dict[str, Any]:
    """Everything an epoch's plan depends on (the lengths through their fingerprint)."""
    mixture = corpus.mixture
    return {
        "format": PLAN_FORMAT,
        "lengths": corpus.fingerprint(),
        "directions": [] if mixture is None else [list(mixture.names), mixture.weights.tolist()],
        "pairs": epoch_size(corpus, seed, epoch),
        "batch_tokens": batch_tokens,
        "seed": seed,
        "epoch": epoch,
    }


def plan_folder(root: Path, epoch: int) -> Path:
    return root / f"epoch-{epoch}"


def open_plan(root: Path, key: dict[str, Any]) -> EpochPlan | None:
    """The plan of ``key`` under ``root`` if it is there, complete and for this key."""
    folder = plan_folder(root, key["epoch"])
    try:
        if json.loads((folder / "plan.json").read_text(encoding="utf-8")) != key:
            return None
        table = np.load(folder / "batches.npy", allow_pickle=False)
        order = FileArray(folder / "order.bin", np.int32, key["pairs"])
    except (OSError, ValueError):
        return None
    complete = os.fstat(order.fd).st_size == 4 * key["pairs"]
    if not complete or table.ndim != 2 or table.shape[1] != 3 or table.dtype != np.int64:
        return None
    if len(table) and (table[:, :2].min() < 0 or table[:, :2].max() > key["pairs"]):
        return None
    return EpochPlan(table, order, key)


def write_plan(root: Path, corpus: StoreCorpus, key: dict[str, Any]) -> EpochPlan:
    """Plan the epoch of ``key`` into ``root`` (atomically); delete other epochs' plans."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".epoch-{key['epoch']}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with open(tmp / "order.bin", "wb") as f:
        f.truncate(4 * key["pairs"])
        put = partial(_pwrite, f.fileno())
        table = plan_epoch(corpus, key["batch_tokens"], key["seed"], key["epoch"], put)
        os.fsync(f.fileno())
    _write_synced(tmp / "batches.npy", partial(np.save, arr=table, allow_pickle=False))
    text = json.dumps(key, indent=1).encode("utf-8")
    _write_synced(tmp / "plan.json", lambda f: f.write(text))
    fsync_dir(tmp)
    final = plan_folder(root, key["epoch"])
    shutil.rmtree(final, ignore_errors=True)  # planned with other settings
    os.replace(tmp, final)
    fsync_dir(root)
    for other in root.iterdir():  # earlier epochs, and folders of killed writes
        if other != final and other.name.startswith(("epoch-", ".epoch-")):
            shutil.rmtree(other, ignore_errors=True)
    return EpochPlan(table, FileArray(final / "order.bin", np.int32, key["pairs"]), key)


def _pwrite(fd: int, position: int, pairs: np.ndarray) -> None:
    """Write int32 ``pairs`` at item ``position`` of the file ``fd``."""
    data = memoryview(np.ascontiguousarray(pairs, dtype=np.int32)).cast("B")
    offset = 4 * position
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


def _write_synced(path: Path, write: Callable[[BinaryIO], object]) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
