"""Fetch Multi30k (WMT16 multimodal task 1) as plain-text ``<split>.<lang>`` files.

Sources are the gzip files of ``multi30k/dataset`` (``data/task1/raw``), taken from a
local mirror when one is given (or named by ``$NMT_MULTI30K_MIRROR``) and downloaded
otherwise. Every archive is checked against a SHA256 list shipped with this package
before a byte of it is used, so a truncated download or a tampered mirror can never
turn into silently different training data. Outputs are written atomically, and a small
sidecar records which verified archive produced each one, so reruns are cheap and an
interrupted run never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from nmt.errors import RuntimeFailure, UsageError

logger = logging.getLogger("nmt.data")

BASE_URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw"
MIRROR_ENV = "NMT_MULTI30K_MIRROR"
LANGS = ("de", "en", "fr", "cs")
REQUIRED_SPLITS = ("train", "val", "test_2016_flickr")
OPTIONAL_SPLITS = ("test_2017_flickr", "test_2017_mscoco", "test_2018_flickr")
SPLITS = REQUIRED_SPLITS + OPTIONAL_SPLITS
DOWNLOAD_TIMEOUT_S = 60.0
CHECKSUM_FILE = Path(__file__).with_name("multi30k_sha256.txt")
_CHUNK = 1 << 20


class DataError(UsageError):
    """A dataset problem the user must fix (missing or corrupt file, bad request)."""


class DownloadFailed(RuntimeFailure):
    """A required file could not be downloaded (network, server): nothing for the user to
    fix in the command, so exit 1, and running it again later may work."""


class _SourceMissing(Exception):
    """An archive is absent from the mirror or could not be downloaded."""

    def __init__(self, message: str, downloading: bool = False) -> None:
        super().__init__(message)
        self.downloading = downloading


def load_checksums(path: Path = CHECKSUM_FILE) -> dict[str, str]:
    """Parse a ``sha256sum``-style list into ``{file name: hex digest}``.

    Strict parsing: a malformed list would otherwise make every file look "absent
    upstream" and be skipped silently.
    """
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name or any(c not in "0123456789abcdef" for c in digest):
            raise DataError(f"{path}:{number}: malformed checksum line: {line!r}")
        sums[name.strip()] = digest
    return sums


def fetch_multi30k(
    out_dir: Path,
    langs: tuple[str, ...] = ("de", "en"),
    mirror: Path | None = None,
    splits: tuple[str, ...] | None = None,
) -> list[Path]:
    """Make ``out_dir/<split>.<lang>`` text files exist and return their paths.

    ``train``, ``val`` and ``test_2016_flickr`` are required (``DataError`` if missing from a
    mirror, ``DownloadFailed`` if the download fails);
    later test sets are best effort (warning if unavailable). Pairs that do not exist
    upstream, such as ``test_2017_mscoco.cs``, are skipped without comment.
    """
    langs = _validated(langs, LANGS, "language")
    splits = _validated(SPLITS if splits is None else splits, SPLITS, "split")
    source = _resolve_mirror(mirror)
    checksums = load_checksums()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    logger.info("Multi30k %s -> %s (source: %s)", "/".join(langs), out_dir, source or BASE_URL)
    present: list[Path] = []
    for split in splits:
        for lang in langs:
            expected = checksums.get(f"{split}.{lang}.gz")
            if expected is None:
                continue
            path = _fetch_one(split, lang, expected, out_dir, source)
            if path is not None:
                present.append(path)
    return present


def _validated(values: tuple[str, ...], allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Check requested names against a fixed list; names become file names, so this
    whitelist is also what keeps every output inside ``out_dir``."""
    if isinstance(values, str):
        values = (values,)
    values = tuple(dict.fromkeys(values))
    if not values:
        raise DataError(f"no {what} requested; choose from {', '.join(allowed)}")
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise DataError(f"unknown {what} {unknown[0]!r}; choose from {', '.join(allowed)}")
    return values


def _resolve_mirror(mirror: Path | None) -> Path | None:
    """Pick the explicit mirror, else ``$NMT_MULTI30K_MIRROR``, else none (download)."""
    if mirror is None:
        env = os.environ.get(MIRROR_ENV, "").strip()
        mirror = Path(env) if env else None
    if mirror is not None and not Path(mirror).is_dir():
        raise DataError(f"Multi30k mirror {mirror} is not a directory")
    return None if mirror is None else Path(mirror)


def _fetch_one(
    split: str, lang: str, expected: str, out_dir: Path, mirror: Path | None
) -> Path | None:
    """Produce one text file, or return None when an optional test set is unavailable."""
    name = f"{split}.{lang}.gz"
    target = out_dir / f"{split}.{lang}"
    sidecar = out_dir / f".{split}.{lang}.sha256"
    if _is_current(target, sidecar, expected):
        logger.info("%s: up to date, skipped", target.name)
        return target
    try:
        with _verified_archive(name, expected, out_dir, mirror) as archive:
            _atomic_write(target, lambda out: _gunzip(archive, out, name))
    except _SourceMissing as exc:
        if split in REQUIRED_SPLITS:
            error = DownloadFailed if exc.downloading else DataError
            raise error(f"required Multi30k file {name} unavailable: {exc}") from None
        logger.warning("%s unavailable, skipping this optional test set: %s", name, exc)
        return None
    _atomic_write(sidecar, lambda out: out.write(f"{expected}\n".encode("ascii")))
    logger.info("%s: wrote %d bytes", target.name, target.stat().st_size)
    return target


def _is_current(target: Path, sidecar: Path, expected: str) -> bool:
    """True when ``target`` was produced earlier from the archive we would use now."""
    try:
        recorded = sidecar.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return False
    return recorded == expected and target.is_file()


@contextlib.contextmanager
def _verified_archive(
    name: str, expected: str, out_dir: Path, mirror: Path | None
) -> Iterator[Path]:
    """Yield a path to the archive ``name`` whose SHA256 is known to equal ``expected``."""
    if mirror is not None:
        archive = mirror / name
        if not archive.is_file():
            raise _SourceMissing(f"not found in mirror {mirror}")
        _check_digest(name, expected, _sha256(archive))
        yield archive
        return
    partial = _download(f"{BASE_URL}/{name}", out_dir, name)
    try:
        _check_digest(name, expected, _sha256(partial))
        yield partial
    finally:
        partial.unlink(missing_ok=True)


def _download(url: str, out_dir: Path, name: str) -> Path:
    """Stream ``url`` into a hidden temp file in ``out_dir`` (same filesystem, so nothing
    lands in ``/tmp``); the temp file is removed if the transfer fails."""
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=".part")
    logger.info("downloading %s", url)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
        ):
            shutil.copyfileobj(response, out, _CHUNK)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, (urllib.error.URLError, TimeoutError, OSError)):
            reason = getattr(exc, "reason", None) or exc
            raise _SourceMissing(f"download of {url} failed ({reason})", True) from exc
        raise
    return Path(tmp)


def _sha256(path: Path) -> str:
    """Hash a file in chunks so large archives never sit whole in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_digest(name: str, expected: str, actual: str) -> None:
    """Refuse an archive whose content differs from the published one."""
    if actual != expected:
        raise DataError(f"checksum mismatch for {name}: expected sha256 {expected}, got {actual}")


def _gunzip(archive: Path, out: BinaryIO, name: str) -> None:
    """Decompress ``archive`` into ``out``; a broken gzip stream becomes a ``DataError``."""
    try:
        with gzip.open(archive, "rb") as src:
            shutil.copyfileobj(src, out, _CHUNK)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"cannot decompress {name}: {exc}") from exc


def _atomic_write(target: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write via a temp file and ``os.replace`` so readers never see a partial file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the data from other users
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
