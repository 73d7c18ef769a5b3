"""Translation speed and BLEU on each memory allocator: the A/B for ``NMT_ALLOCATOR``.

nmt re-executes itself on TCMalloc by default (nmt/allocator.py) because training's
resident memory stays flat and its steps get faster there. This bench checks the other
side: that translation gets no slower and its output does not change. One checkpoint,
test_2016_flickr, greedy and beam 5, fp32 and bf16; each measurement in a fresh process
whose LD_PRELOAD is what ``nmt`` would set, the allocators interleaved in every repeat so
that a noisy machine hits them alike; the best of ``--repeats`` is reported.

    python bench/allocator_translate.py runs/quickstart \
        --json bench/results/allocator_translate.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from profile_train import host
from speed import REPO, run_child

sys.path.insert(0, str(REPO))  # run from the repository without installing it
from nmt.allocator import preload_env  # noqa: E402

ALLOCATORS = ("system", "tcmalloc", "jemalloc")


def allocator_env(name: str) -> dict[str, str] | None:
    """The environment ``nmt`` runs under with ``NMT_ALLOCATOR=name``; None if not installed."""
    base = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "NMT_ALLOCATOR_APPLIED")}
    if name == "system":
        return base
    return preload_env({**base, "NMT_ALLOCATOR": name})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a trained run directory (its best checkpoint)")
    parser.add_argument("--data", default="data/multi30k")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--beams", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument(
        "--allocators", nargs="+", default=list(ALLOCATORS[1:]), help="set beside the system's"
    )
    parser.add_argument("--json", default=None)
    opts = parser.parse_args()
    envs = {name: allocator_env(name) for name in ("system", *opts.allocators)}
    envs = {name: env for name, env in envs.items() if env is not None}
    cases = [(beam, precision) for beam in opts.beams for precision in opts.precisions]
    best: dict[tuple[int, str, str], dict] = {}  # (beam, precision, allocator) -> fastest
    for _ in range(opts.repeats):
        for beam, precision in cases:
            for name, env in envs.items():
                args = ["translate", opts.run, precision, str(beam), opts.data, str(opts.sentences)]
                out = run_child(args, env)
                key = (beam, precision, name)
                if key not in best or out["sentences_per_s"] > best[key]["sentences_per_s"]:
                    best[key] = out
    rows = []
    for beam, precision in cases:
        base = best[beam, precision, "system"]
        for name in envs:
            out = best[beam, precision, name]
            rows.append({
                "beam": beam, "precision": precision, "allocator": name,
                "sentences_per_s": round(out["sentences_per_s"], 1),
                "ratio_to_system": round(out["sentences_per_s"] / base["sentences_per_s"], 3),
                "bleu": round(out["bleu"], 2),
                "same_output_as_system": out["hyps"] == base["hyps"],
                "peak_rss_mib": round(out["peak_rss_mib"]),
            })  # fmt: skip
    for row in rows:
        print(
            f"beam {row['beam']} {row['precision']:4} {row['allocator']:8} "
            f"{row['sentences_per_s']:7.1f} sent/s  x{row['ratio_to_system']:.3f}  "
            f"BLEU {row['bleu']:.2f}  same output: {row['same_output_as_system']}  "
            f"peak RSS {row['peak_rss_mib']:,} MiB"
        )
    if opts.json:
        report = {
            "run": opts.run, "sentences": opts.sentences, "repeats": opts.repeats,
            "host": host(), "results": rows,
            "tcmalloc_env": {k: v for k, v in os.environ.items() if k.startswith("TCMALLOC")},
        }  # fmt: skip
        Path(opts.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
