"""Does subword regularization help? Validation BLEU at equal updates, with and without.

Trains every backbone's Multi30k config twice for the same number of updates, once with
the best segmentation and once with ``tokenizer.sample_alpha`` (re-sampled each epoch);
the two runs of a backbone train side by side, each in its own ``nmt train`` process, so
that they share the machine's load. Prints the greedy validation BLEU (the whole
validation set) of each. Short runs are noisy and a regularizer pays most in long ones:
read a small difference as no difference.

    python bench/subword_sampling.py --steps 400 --out runs/subword --json bench/subword.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nmt.artifacts.rundir import RunDir

BACKBONES = ("lstm", "attention", "transformer")


def overrides(steps: int, alpha: float, threads: int) -> list[str]:
    """Equal updates for every run: no time limit, validation half way and at the end, a
    warmup short enough (a fifth of the run) for the learning rate to peak within it."""
    return [
        f"train.max_steps={steps}",
        "train.max_minutes=0",
        f"train.valid_every={max(steps // 2, 1)}",
        f"train.warmup_steps={max(steps // 5, 1)}",
        "train.average_last=0",
        "train.keep_checkpoints=1",
        f"train.threads={threads}",
        f"tokenizer.sample_alpha={alpha}",
    ]


def final_validation(run: RunDir) -> dict | None:
    if not run.metrics.is_file():
        return None
    lines = run.metrics.read_text(encoding="utf-8").splitlines()
    valid = [r for r in map(json.loads, lines) if "valid_bleu" in r]
    return valid[-1] if valid else None


def train(config: Path, run: RunDir, sets: list[str]) -> float:
    """Train one run in its own process (skipped if already validated); wall seconds."""
    if final_validation(run) is not None:
        return 0.0
    cmd = [sys.executable, "-m", "nmt", "train", str(config), "--out", str(run.path)]
    cmd += ["--overwrite"] + [a for s in sets for a in ("--set", s)]
    start = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def train_pair(config: Path, runs: list[RunDir], sets: list[list[str]]) -> list[float]:
    """Train both arms of one backbone side by side (one thread each by default), so that
    they share whatever load the machine has and their wall times compare."""
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        return list(pool.map(lambda rs: train(config, *rs), zip(runs, sets)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=Path, default=Path("configs/multi30k/de-en"))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    parser.add_argument("--out", type=Path, default=Path("runs/subword"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    for backbone in args.backbones:
        alphas = (0.0, args.alpha)
        runs = [RunDir(args.out / f"{backbone}-alpha{alpha:g}") for alpha in alphas]
        sets = [overrides(args.steps, alpha, args.threads) for alpha in alphas]
        seconds = train_pair(args.configs / f"{backbone}.yaml", runs, sets)
        for alpha, run, secs in zip(alphas, runs, seconds):
            record = final_validation(run)
            rows.append({"backbone": backbone, "sample_alpha": alpha, "seconds": secs, **record})
            print(
                f"{backbone:12s} alpha {alpha:<4g} step {record['step']}: valid BLEU "
                f"{record['valid_bleu']:.2f}  nll {record['valid_nll']:.3f}  ({secs:.0f} s)",
                flush=True,
            )
        if args.json:  # after every backbone: a long benchmark keeps what it has measured
            args.json.write_text(json.dumps({"steps": args.steps, "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
