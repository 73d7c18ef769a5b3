"""One lock mechanism for folders that one process at a time may write: ``flock`` on a
lock file. The data store waits for it (two commands building one store: the second
uses what the first built); a run directory refuses a second trainer at once."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


class Busy(Exception):
    """``wait=False`` and another process holds the lock."""


@contextlib.contextmanager
def file_lock(path: Path, wait: bool = True) -> Iterator[OSError | None]:
    """Hold ``path`` (created if missing) exclusively while the block runs.

    Where the lock file cannot be made (a read-only folder), yields the error instead,
    so that the caller decides whether it needs to write there. ``wait=False`` raises
    :class:`Busy` at once when another process holds the lock. The lock goes with the
    process, so a killed holder never leaves a stale one behind.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path, "a")  # noqa: SIM115
    except OSError as e:
        yield e
        return
    with lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError as e:
            raise Busy(str(path)) from e
        yield None
