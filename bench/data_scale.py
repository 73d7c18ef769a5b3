"""Large corpora: store build speed, and peak memory and start-up time of ``nmt train``.

A corpus of N pairs is made by repeating Multi30k's training split (the raw gzip files of
a local Multi30k mirror). For each size the benchmark

- builds the data store (``nmt data prepare --rebuild``) and reports pairs/s, wall and
  CPU time (``--build``);
- runs ``nmt train CONFIG --set train.max_steps=3`` with the store present and reports
  peak RSS, the time from start to the first update, and the total time (``--train``);
- runs the same under ``torchrun --nproc-per-node 2`` and reports the summed RSS and
  PSS of the worker processes (``--torchrun``). PSS (proportional set size) counts a page
  shared by two processes half in each, so the sum counts the memory-mapped corpus once.

Every measurement is a subprocess of its own. Run it niced on a shared machine, and
compare sizes within one run (Multi30k is always measured as the baseline):

    nice -n 10 python bench/data_scale.py --work /tmp/nmt-scale --sizes 1000000 4000000 \\
        --build --train --torchrun --json bench/results/data_scale.json

Times on a machine shared with other jobs are upper bounds; the build's pairs per
CPU-second is less disturbed by them than its wall-clock pairs/s.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "transformer.yaml"
MULTI30K = 29_000
TRAIN_SETS = [
    "train.max_steps=3",
    "train.log_every=1",
    "train.valid_every=1000000",
    "train.valid_bleu=false",
    "train.valid_max_sentences=100",
    "train.keep_checkpoints=0",
    "train.max_minutes=0",
]


def default_mirror() -> Path:
    env = os.environ.get("NMT_MULTI30K_MIRROR")
    return Path(env) if env else REPO.parent / "shared" / "data" / "multi30k"


# --- corpora ---------------------------------------------------------------------------------
def make_corpus(mirror: Path, out: Path, pairs: int) -> Path:
    """``out/train.{de,en}`` of ``pairs`` lines (Multi30k train repeated) and Multi30k val."""
    done = out / ".complete"
    if done.is_file() and done.read_text() == str(pairs):
        return out
    out.mkdir(parents=True, exist_ok=True)
    for lang in ("de", "en"):
        lines = gzip.decompress((mirror / f"train.{lang}.gz").read_bytes()).splitlines(True)
        with open(out / f"train.{lang}", "wb") as f:
            for _ in range(pairs // len(lines)):
                f.writelines(lines)
            f.writelines(lines[: pairs % len(lines)])
        (out / f"val.{lang}").write_bytes(gzip.decompress((mirror / f"val.{lang}.gz").read_bytes()))
    done.write_text(str(pairs))
    return out


def tokenizer(work: Path, multi30k: Path) -> Path:
    """One SentencePiece model (the config's settings) trained on Multi30k, for all sizes."""
    prefix = work / "spm"
    if not Path(f"{prefix}.model").is_file():
        sys.path.insert(0, str(REPO))
        from nmt.config import load_config
        from nmt.tokenizer import train_tokenizer

        t = load_config(CONFIG).tokenizer
        src, tgt = [multi30k / "train.de"], [multi30k / "train.en"]
        train_tokenizer(prefix, src, tgt, t.vocab_size, t.type, t.joint, t.character_coverage)
    return prefix


def sets(data: Path, prefix: Path, extra: list[str]) -> list[str]:
    pairs = [f"data.dir={data}", f"tokenizer.model={prefix}", *extra]
    return [x for s in pairs for x in ("--set", s)]


# --- process measurements ----------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def _kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """Peaks of the summed RSS and PSS of the python processes under ``pid`` (without
    ``pid`` itself when ``workers_only``: torchrun's launcher), and when ``metrics``
    first holds an update, every 0.1 s."""

    def __init__(self, pid: int, metrics: Path, start: float, workers_only: bool) -> None:
        super().__init__(daemon=True)
        self.pid, self.metrics, self.t0 = pid, metrics, start
        self.workers_only = workers_only
        self.peak_rss = self.peak_pss = 0
        self.first_update_s: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            pids = [p for p in _tree(self.pid) if _is_python(p)]
            if self.workers_only:
                pids = [p for p in pids if p != self.pid]
            self.peak_rss = max(self.peak_rss, sum(_kib(p, "Rss") for p in pids))
            self.peak_pss = max(self.peak_pss, sum(_kib(p, "Pss") for p in pids))
            if self.first_update_s is None and _has_update(self.metrics):
                self.first_update_s = time.monotonic() - self.t0


def _is_python(pid: int) -> bool:
    try:
        return "python" in Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return False


def _has_update(metrics: Path) -> bool:
    try:
        return any('"loss"' in line for line in metrics.read_text().splitlines())
    except OSError:
        return False


def run_sampled(cmd: list[str], make_sampler) -> tuple[threading.Thread, str, float, object]:
    """Run ``cmd`` with ``make_sampler(pid, start)`` (a thread with a ``stop`` event)
    watching it; the sampler, the output, the wall seconds and the rusage. Exits with the
    output's tail if ``cmd`` fails."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    sampler = make_sampler(proc.pid, start)
    sampler.start()
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    sampler.stop.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{output[-3000:]}")
    return sampler, output, wall, usage


def run_measured(cmd: list[str], run_dir: Path | None = None, workers_only: bool = False) -> dict:
    """Run ``cmd``; wall time, CPU time, peak RSS (kernel's, of the largest process) and
    the sampled peaks, and the time to the first update when ``run_dir`` is a run."""
    metrics = (run_dir or Path("/nonexistent")) / "metrics.jsonl"
    sampler, output, wall, usage = run_sampled(
        cmd, lambda pid, start: Sampler(pid, metrics, start, workers_only)
    )
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "max_rss_mib": round(usage.ru_maxrss / 1024),
        "sampled_rss_mib": round(sampler.peak_rss / 1024),
        "sampled_pss_mib": round(sampler.peak_pss / 1024),
        "first_update_s": None
        if sampler.first_update_s is None
        else round(sampler.first_update_s, 1),
        "store_path": "data store" in output,
        "output_tail": output[-600:],
    }


# --- the three measurements --------------------------------------------------------------------
def measure_build(data: Path, prefix: Path) -> dict:
    cmd = [sys.executable, "-m", "nmt", "data", "prepare", str(CONFIG), "--rebuild"]
    result = run_measured(cmd + sets(data, prefix, []))
    newest = max(
        (data / "nmt-store").glob("train.*/manifest.json"), key=lambda p: p.stat().st_mtime
    )
    manifest = json.loads(newest.read_text())
    built, read = manifest["built"], manifest["counts"]["read"]
    result.update(
        pairs=read,
        build_s=built["seconds"],
        pairs_per_s=built["pairs_per_s"],
        pairs_per_cpu_s=round(read / max(result["cpu_s"], 1e-9)),
        processes=built["processes"],
    )
    return result


def measure_train(data: Path, prefix: Path, work: Path, name: str) -> dict:
    run = work / f"run-{name}"
    shutil.rmtree(run, ignore_errors=True)
    cmd = [sys.executable, "-m", "nmt", "train", str(CONFIG), "--out", str(run)]
    return run_measured(cmd + sets(data, prefix, TRAIN_SETS), run)


def measure_torchrun(data: Path, prefix: Path, work: Path, name: str) -> dict:
    run = work / f"run-ddp-{name}"
    shutil.rmtree(run, ignore_errors=True)
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
    ]
    cmd = launch + ["-m", "nmt", "train", str(CONFIG), "--out", str(run), "--device", "cpu"]
    return run_measured(cmd + sets(data, prefix, TRAIN_SETS), run, workers_only=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/nmt-scale"))
    parser.add_argument("--mirror", type=Path, default=default_mirror())
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--build", action="store_true", help="Measure store builds.")
    parser.add_argument("--train", action="store_true", help="Measure nmt train (3 updates).")
    parser.add_argument("--torchrun", action="store_true", help="Measure 2 processes too.")
    parser.add_argument("--json", type=Path, help="Write the results here.")
    args = parser.parse_args()
    work = args.work.resolve()
    multi30k = make_corpus(args.mirror, work / "multi30k", MULTI30K)
    prefix = tokenizer(work, multi30k)
    results = {"host": _host(), "sizes": {}}
    for pairs in [MULTI30K] + [n for n in args.sizes if n != MULTI30K]:
        data = (
            multi30k
            if pairs == MULTI30K
            else make_corpus(args.mirror, work / f"pairs-{pairs}", pairs)
        )
        row = results["sizes"][str(pairs)] = {}
        if args.build or not list((data / "nmt-store").glob("train.*/manifest.json")):
            row["build"] = measure_build(data, prefix)
        if args.train:
            row["train"] = measure_train(data, prefix, work, str(pairs))
        if args.torchrun and pairs in (MULTI30K, max(args.sizes)):
            row["torchrun"] = measure_torchrun(data, prefix, work, str(pairs))
        print(json.dumps({pairs: _brief(row)}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def _brief(row: dict) -> dict:
    return {k: {f: v for f, v in r.items() if f != "output_tail"} for k, r in row.items()}


def _host() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    load = os.getloadavg()
    return {"cpu": model, "cores": os.cpu_count(), "load_avg_at_start": [round(x, 2) for x in load]}


if __name__ == "__main__":
    main()
