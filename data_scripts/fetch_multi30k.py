#!/usr/bin/env python3
"""Fetch Multi30k into ``<split>.<lang>`` text files from the command line.

A thin wrapper: all logic lives in :mod:`nmt.data.multi30k`, so the script and the
library can never disagree about checksums or file layout. It works from a plain
checkout (no install) by putting the repository root on ``sys.path`` when needed.

Example::

    python data_scripts/fetch_multi30k.py --out data/multi30k --langs de en
    python data_scripts/fetch_multi30k.py --mirror ../shared/data/multi30k
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_fetcher() -> ModuleType:
    """Import ``nmt.data.multi30k``, falling back to this checkout when ``nmt`` isn't installed."""
    try:
        return importlib.import_module("nmt.data.multi30k")
    except ModuleNotFoundError as exc:
        if exc.name not in ("nmt", "nmt.data", "nmt.data.multi30k"):
            raise
    sys.path.insert(0, str(REPO_ROOT))
    return importlib.import_module("nmt.data.multi30k")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; defaults match the ``data.dir`` default of the configs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("data/multi30k"), help="output folder (created)"
    )
    parser.add_argument(
        "--langs", nargs="+", default=["de", "en"], help="languages: de en fr cs (default: de en)"
    )
    parser.add_argument(
        "--mirror",
        type=Path,
        default=None,
        help="local folder of <split>.<lang>.gz files (default: $NMT_MULTI30K_MIRROR, "
        "else download from GitHub)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    return parser.parse_args(argv)


def count_lines(path: Path) -> int:
    """Line count for the summary, so a truncated corpus is visible at a glance."""
    with path.open("rb") as f:
        return sum(1 for _ in f)


def main(argv: list[str] | None = None) -> int:
    """Run the fetch and print one summary line per file; exit 2 on a data problem, 1 when
    the download fails."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s"
    )
    fetcher = load_fetcher()
    langs = tuple(lang for item in args.langs for lang in item.split(",") if lang)
    try:
        paths = fetcher.fetch_multi30k(args.out, langs=langs, mirror=args.mirror)
    except fetcher.DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except fetcher.DownloadFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Multi30k: {len(paths)} files in {args.out}")
    for path in paths:
        print(f"  {path.name:<24} {count_lines(path):>7} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
