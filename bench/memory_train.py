"""How a training run's memory evolves: RSS sampled over time, per allocator, one run each.

    python bench/memory_train.py --config configs/quickstart.yaml --steps 400 \
        --allocators system jemalloc --json bench/results/memory_train.json

Each run is ``nmt train CONFIG --set train.max_steps=N`` in a subprocess of its own, with
``NMT_ALLOCATOR`` naming the allocator (see README, "Performance"). Every ``--every``
seconds the bench reads VmRSS of the process from /proc and the run's step count from its
metrics.jsonl, so that growth can be told apart from "more updates happened": the report
gives RSS at fixed fractions of the run and the peak (VmHWM). Runs on a busy machine take
longer but grow in the same way per update, which is what this bench compares.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def last_step(run: Path) -> int:
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return 0
    steps = [json.loads(ln).get("step", 0) for ln in lines if ln.strip()]
    return max(steps, default=0)


def one_run(
    config: Path, steps: int, allocator: str, every: float, extra: list[str], keep: Path | None
) -> dict:
    """One training run; ``steps`` 0 keeps the config's own budget (e.g. 5 minutes);
    ``keep``: leave the run directory there (to evaluate it), else it is deleted."""
    work = Path(tempfile.mkdtemp(prefix="nmt-mem-"))
    run = keep if keep is not None else work / "run"
    env = dict(os.environ, NMT_ALLOCATOR=allocator)
    cmd = [sys.executable, "-m", "nmt", "--quiet", "train", str(config), "--out", str(run)]
    if steps:
        cmd += ["--set", f"train.max_steps={steps}", "--set", "train.max_minutes=0"]
    for item in extra:
        cmd += ["--set", item]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env)
    samples, peak = [], 0
    while proc.poll() is None:
        rss, hwm = status_kib(proc.pid, "VmRSS"), status_kib(proc.pid, "VmHWM")
        if rss is not None:
            samples.append((round(time.perf_counter() - start, 1), last_step(run), rss / 1024))
            peak = max(peak, (hwm or 0) / 1024)
        time.sleep(every)
    shutil.rmtree(work, ignore_errors=True)
    return {"allocator": allocator, "rc": proc.returncode, "seconds": time.perf_counter() - start,
            "peak_rss_mib": peak, "samples": samples}  # fmt: skip


def at_fractions(samples: list, fractions=(0.1, 0.25, 0.5, 0.75, 1.0)) -> dict:
    """RSS (MiB) when the run had done each fraction of its updates (after the data loaded)."""
    final = max((s[1] for s in samples), default=0) or 1
    out = {}
    for f in fractions:
        hit = [s for s in samples if s[1] >= f * final]
        out[f"{f:.0%}"] = round(hit[0][2]) if hit else None
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=REPO / "configs" / "quickstart.yaml")
    p.add_argument("--steps", type=int, default=400, help="0: the config's own budget")
    p.add_argument("--allocators", nargs="+", default=["system", "jemalloc"])
    p.add_argument("--every", type=float, default=2.0)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--keep", type=Path, help="keep each run as KEEP-<i>-<allocator>")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    results = []
    for i, allocator in enumerate(args.allocators):
        keep = Path(f"{args.keep}-{i}-{allocator}") if args.keep else None
        r = one_run(args.config, args.steps, allocator, args.every, args.set, keep)
        r["run"] = str(keep) if keep else None
        r["rss_at_update_fraction"] = at_fractions(r["samples"])
        print(json.dumps({k: v for k, v in r.items() if k != "samples"}), flush=True)
        results.append(r)
    if args.json:
        host = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = [
            ln.split(":", 1)[1].strip() for ln in host.splitlines() if ln.startswith("Model name")
        ]
        doc = {"host": model[0] if model else None, "config": str(args.config), "steps": args.steps,
               "runs": results}  # fmt: skip
        args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
