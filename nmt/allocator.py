"""Which memory allocator a command process runs on: ``NMT_ALLOCATOR``.

A training step allocates and frees tensors of many sizes (batches of varying shapes,
activations, the loss's chunks), and glibc's malloc keeps freed memory in per-thread
arenas that it returns to the system only from the top of each heap: a run's resident
memory grows although the tensors alive stay the same, and large blocks that it does
return come back as fresh pages, each a page fault (README, "Performance", has the
measurements). TCMalloc (gperftools) and jemalloc (Evans 2006, "A scalable concurrent
malloc(3) implementation for FreeBSD") keep freed memory in size classes for reuse, so
resident memory stays flat; on the bench TCMalloc was also the faster of the two.

``NMT_ALLOCATOR``: ``auto`` (default: TCMalloc if installed, else jemalloc, else the
system's), ``tcmalloc``, ``jemalloc`` or ``system``. An allocator can only be chosen
before the process starts, so :func:`use_configured` re-executes the command once with
the library in ``LD_PRELOAD`` (same process id, same arguments). A library that is not
installed leaves the command on the system allocator.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

LIBRARIES = {
    "jemalloc": ("libjemalloc.so.2",),
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"),
}
DEFAULT = "auto"
AUTO_ORDER = ("tcmalloc", "jemalloc")  # the first one installed
SEARCH_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")
APPLIED = "NMT_ALLOCATOR_APPLIED"  # set in the re-executed process: never loop


UNKNOWN = "NMT_ALLOCATOR must be auto, tcmalloc, jemalloc or system"


def known(environ: dict[str, str] | os._Environ) -> bool:
    """Whether ``NMT_ALLOCATOR`` (when set) names an allocator this module knows."""
    name = environ.get("NMT_ALLOCATOR", DEFAULT).strip().lower()
    return name in ("", "auto", "system", *LIBRARIES)


def library_path(name: str) -> Path | None:
    """The shared library of allocator ``name`` (``auto``: the first of
    :data:`AUTO_ORDER` installed) on this system, if installed."""
    if name == "auto":
        found = (library_path(n) for n in AUTO_ORDER)
        return next((p for p in found if p is not None), None)
    for directory in SEARCH_DIRS:
        for filename in LIBRARIES.get(name, ()):
            path = Path(directory) / filename
            if path.is_file():
                return path
    return None


def preload_env(environ: dict[str, str]) -> dict[str, str] | None:
    """The environment to re-execute with, or None when the process should run as it is
    (system allocator asked for, library missing, already applied, or unknown name)."""
    name = environ.get("NMT_ALLOCATOR", DEFAULT).strip().lower()
    if name in ("", "system") or environ.get(APPLIED) or not known({"NMT_ALLOCATOR": name}):
        return None
    path = library_path(name)
    if path is None or str(path) in environ.get("LD_PRELOAD", ""):
        return None
    preload = " ".join(p for p in (str(path), environ.get("LD_PRELOAD", "")) if p)
    return {**environ, "LD_PRELOAD": preload, APPLIED: name}


def use_configured() -> None:
    """Re-execute this command on the allocator ``NMT_ALLOCATOR`` names (default auto),
    before anything heavy is imported; a no-op when there is nothing to change."""
    env = preload_env(dict(os.environ))
    if env is None or not getattr(sys, "orig_argv", None):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, env)
    except OSError:  # cannot re-execute (unusual interpreter setup): run as we are
        return
