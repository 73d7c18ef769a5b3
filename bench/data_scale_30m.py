"""30 million synthetic pairs: store build, disk, start-up time and memory per torchrun process.

The corpus: N pairs whose sentences have the word counts of a random Multi30k training
pair, and whose words are drawn from Multi30k's own words (each side from its language,
by frequency: a uniform draw from all the running words of that side). The vocabulary,
the subwords per word and the length distribution are Multi30k's, but no pair repeats,
so the store and the batch plans are those of a genuinely large corpus. Multi30k itself
is the reference, measured in the same run with the same commands.

For each corpus the benchmark

- builds the data store (``nmt data prepare --rebuild``): pairs/s (the manifest's),
  pairs per CPU-second, and the disk size of the text and of the store;
- runs ``nmt train CONFIG`` for 3 updates on CPU under ``torchrun --nproc-per-node P``
  for P = 1, 2, 4, with the store present: seconds from launch to the first update (the
  first loss line of metrics.jsonl) and, for every worker process, its peak resident
  size (``VmHWM`` of ``/proc/PID/status``, read every 0.05 s while it runs) with the
  peaks of its anonymous and file-backed parts (``RssAnon``, ``RssFile``).

Targets (issue 26): build >= 70,000 pairs/s; first update within 30 s of Multi30k's
once the store exists; peak RSS per process within +0.5 GB of Multi30k's.

    nice -n 10 python bench/data_scale_30m.py --pairs 30000000 \\
        --json bench/results/data-scale/data_scale_30m.json

Free disk is checked first (text + store + one run's epoch plan, from Multi30k's bytes
per pair); when N pairs do not fit, the largest N that fits is run and the JSON says so.
Every measurement is a subprocess of its own; on a shared machine the times are upper
bounds (the JSON records the CPU model and the load average before and after).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data_scale  # noqa: E402  (the sibling benchmark's corpus, tokenizer and build helpers)

REPO = data_scale.REPO
PROCESSES = (1, 2, 4)
CHUNK_PAIRS = 200_000
STORE_BYTES_PER_PAIR = 100  # ids (2 bytes a subword), offsets and lengths of both sides
PLAN_BYTES_PER_PAIR = 4  # a run's epoch plan (int32 pair indices)


# --- the synthetic corpus ----------------------------------------------------------------------
def multi30k_words(mirror: Path, lang: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Multi30k's words of one language: the distinct words, every running word as an index
    into them (a uniform draw from it is a draw by frequency), and each line's word count."""
    lines = gzip.decompress((mirror / f"train.{lang}.gz").read_bytes()).decode().splitlines()
    index: dict[str, int] = {}
    running = [index.setdefault(w, len(index)) for line in lines for w in line.split()]
    counts = np.fromiter((len(line.split()) for line in lines), dtype=np.int64, count=len(lines))
    return list(index), np.asarray(running, dtype=np.int32), counts


def synthetic_text(
    words: list[str], running: np.ndarray, counts: np.ndarray, rng: np.random.Generator
) -> str:
    """Lines with the given word counts, each word drawn from ``running``; one string."""
    drawn = running[rng.integers(0, len(running), int(counts.sum()))]  # (W,) word ids
    last = np.zeros(len(drawn), dtype=bool)
    last[np.cumsum(counts) - 1] = True  # the last word of each line ends it
    spaced = np.array([w + " " for w in words], dtype=object)
    ended = np.array([w + "\n" for w in words], dtype=object)
    return "".join(np.where(last, ended[drawn], spaced[drawn]).tolist())


def make_synthetic(mirror: Path, out: Path, pairs: int, seed: int = 0) -> Path:
    """``out/train.{de,en}``: ``pairs`` synthetic pairs; ``out/val.*``: Multi30k's."""
    done = out / ".complete"
    if done.is_file() and done.read_text() == str(pairs):
        return out
    out.mkdir(parents=True, exist_ok=True)
    de, en = multi30k_words(mirror, "de"), multi30k_words(mirror, "en")
    rng = np.random.default_rng(seed)
    start = time.monotonic()
    with (
        open(out / "train.de", "w", encoding="utf-8") as f_de,
        open(out / "train.en", "w", encoding="utf-8") as f_en,
    ):
        for first in range(0, pairs, CHUNK_PAIRS):
            rows = rng.integers(0, len(de[2]), min(CHUNK_PAIRS, pairs - first))  # Multi30k pairs
            f_de.write(synthetic_text(de[0], de[1], de[2][rows], rng))
            f_en.write(synthetic_text(en[0], en[1], en[2][rows], rng))
    for lang in ("de", "en"):
        (out / f"val.{lang}").write_bytes(gzip.decompress((mirror / f"val.{lang}.gz").read_bytes()))
    print(f"generated {pairs:,} pairs in {time.monotonic() - start:.0f} s", flush=True)
    done.write_text(str(pairs))
    return out


# --- disk -------------------------------------------------------------------------------------
def text_bytes_per_pair(multi30k: Path) -> float:
    size = sum((multi30k / f"train.{lang}").stat().st_size for lang in ("de", "en"))
    return size / data_scale.MULTI30K


def fitting_pairs(work: Path, wanted: int, per_pair: float) -> tuple[int, dict]:
    """The pairs that fit on ``work``'s disk (``wanted`` or fewer), and the figures."""
    free = shutil.disk_usage(work).free
    existing = _tree_bytes(work / f"synthetic-{wanted}")
    need = int(wanted * per_pair * 1.2) - existing  # 20 % margin
    disk = {"free_gb": round(free / 1e9, 1), "needed_gb": round(need / 1e9, 1)}
    if need <= free:
        return wanted, disk
    fits = int((free - 2e9) / (per_pair * 1.2)) // 1_000_000 * 1_000_000
    print(f"{wanted:,} pairs need {need / 1e9:.1f} GB, {free / 1e9:.1f} GB free: {fits:,} pairs")
    return fits, {**disk, "reduced_from": wanted}


def _tree_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --- per-process peaks -------------------------------------------------------------------------
def _status(pid: int) -> dict[str, int]:
    """VmHWM, VmRSS, RssAnon, RssFile of ``pid`` in KiB (empty once it has exited)."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                fields[name] = int(value.split()[0])
    except OSError:
        pass
    return fields


class WorkerPeaks(threading.Thread):
    """Every 0.05 s: each python process under ``pid`` (the launcher itself left out), its
    VmHWM and the peaks of RssAnon and RssFile; and when ``metrics`` first holds a loss."""

    def __init__(self, pid: int, metrics: Path, start: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.metrics, self.t0 = pid, metrics, start
        self.peaks: dict[int, dict[str, int]] = {}
        self.first_update_s: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            for p in data_scale._tree(self.pid):
                if p == self.pid or not data_scale._is_python(p):
                    continue
                now, peak = _status(p), self.peaks.setdefault(p, {})
                for name, value in now.items():
                    peak[name] = max(peak.get(name, 0), value)
            if self.first_update_s is None and data_scale._has_update(self.metrics):
                self.first_update_s = time.monotonic() - self.t0

    def workers(self) -> list[dict[str, int]]:
        """Per worker (in start order): peak RSS, anonymous and file-backed, in MiB."""
        return [
            {
                "hwm_mib": round(p.get("VmHWM", 0) / 1024),
                "anon_peak_mib": round(p.get("RssAnon", 0) / 1024),
                "file_peak_mib": round(p.get("RssFile", 0) / 1024),
            }
            for _, p in sorted(self.peaks.items())
            if p
        ]


def measure_torchrun(data: Path, prefix: Path, work: Path, name: str, processes: int) -> dict:
    """3 updates under ``torchrun --nproc-per-node processes`` (CPU), the store present."""
    run = work / f"run-{name}-p{processes}"
    shutil.rmtree(run, ignore_errors=True)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd = [*launch, "--nproc-per-node", str(processes), "-m", "nmt", "train"]
    cmd += [str(data_scale.CONFIG), "--out", str(run), "--device", "cpu"]
    cmd += data_scale.sets(data, prefix, data_scale.TRAIN_SETS)
    sampler, output, wall, usage = data_scale.run_sampled(
        cmd, lambda pid, start: WorkerPeaks(pid, run / "metrics.jsonl", start)
    )
    workers = sampler.workers()
    plan_bytes = sum(p.stat().st_size for p in (run / "plans").rglob("order.bin"))
    shutil.rmtree(run, ignore_errors=True)
    return {
        "processes": processes,
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "first_update_s": None
        if sampler.first_update_s is None
        else round(sampler.first_update_s, 1),
        "max_rss_mib": round(usage.ru_maxrss / 1024),  # the kernel's: largest process of the tree
        "workers": workers,
        "hwm_max_mib": max((w["hwm_mib"] for w in workers), default=0),
        "plan_mib": round(plan_bytes / 2**20, 1),
    }


# --- the run ------------------------------------------------------------------------------------
def store_figures(data: Path, prefix: Path, build: bool) -> dict:
    """The build (when asked or missing) and the disk taken by text and store."""
    figures = {}
    if build or not list((data / "nmt-store").glob("train.*/manifest.json")):
        figures = data_scale.measure_build(data, prefix)
        figures.pop("output_tail", None)
    text = sum((data / f"train.{lang}").stat().st_size for lang in ("de", "en"))
    figures["text_mb"] = round(text / 1e6, 1)
    figures["store_mb"] = round(_tree_bytes(data / "nmt-store") / 1e6, 1)
    return figures


def corpus_row(data: Path, prefix: Path, work: Path, name: str, args: argparse.Namespace) -> dict:
    row = {"store": store_figures(data, prefix, args.build), "torchrun": []}
    for processes in args.processes:
        row["torchrun"].append(measure_torchrun(data, prefix, work, name, processes))
        print(json.dumps({name: row["torchrun"][-1]}), flush=True)
    return row


def verdict(results: dict) -> dict:
    """The three targets, each with the figures it compares."""
    ref, big = results["multi30k"], results["synthetic"]
    by_p = {r["processes"]: r for r in ref["torchrun"]}
    first = [
        (r["processes"], r["first_update_s"], by_p[r["processes"]]["first_update_s"])
        for r in big["torchrun"]
    ]
    rss = [
        (r["processes"], r["hwm_max_mib"], by_p[r["processes"]]["hwm_max_mib"])
        for r in big["torchrun"]
    ]
    return {
        "build_pairs_per_s": {
            "value": big["store"].get("pairs_per_s"),
            "target": ">= 70000",
            "met": (big["store"].get("pairs_per_s") or 0) >= 70_000,
        },
        "first_update_s": {
            "per_processes": {p: {"value": v, "multi30k": m} for p, v, m in first},
            "target": "<= multi30k + 30",
            "met": all(v is not None and m is not None and v <= m + 30 for _, v, m in first),
        },
        "rss_per_process_mib": {
            "per_processes": {p: {"value": v, "multi30k": m} for p, v, m in rss},
            "target": "<= multi30k + 512 (largest worker)",
            "met": all(v <= m + 512 for _, v, m in rss),
        },
    }


def host() -> dict:
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    wanted = ("Model name", "CPU family", "Model:", "CPU(s):")
    lines = [line.strip() for line in cpu.splitlines() if line.strip().startswith(wanted)]
    return {**data_scale._host(), "lscpu": lines, "uptime_at_start": _uptime()}


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/nmt-scale-30m"))
    parser.add_argument("--mirror", type=Path, default=data_scale.default_mirror())
    parser.add_argument("--pairs", type=int, default=30_000_000)
    parser.add_argument("--processes", type=int, nargs="+", default=list(PROCESSES))
    parser.add_argument("--build", action="store_true", help="Rebuild stores that exist.")
    parser.add_argument("--json", type=Path, help="Write the results here.")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    multi30k = data_scale.make_corpus(args.mirror, work / "multi30k", data_scale.MULTI30K)
    prefix = data_scale.tokenizer(work, multi30k)
    per_pair = text_bytes_per_pair(multi30k) + STORE_BYTES_PER_PAIR + PLAN_BYTES_PER_PAIR
    pairs, disk = fitting_pairs(work, args.pairs, per_pair)
    results = {"host": host(), "pairs": pairs, "disk": disk, "config": str(data_scale.CONFIG)}
    results["multi30k"] = corpus_row(multi30k, prefix, work, "multi30k", args)
    synthetic = make_synthetic(args.mirror, work / f"synthetic-{pairs}", pairs)
    results["synthetic"] = corpus_row(synthetic, prefix, work, f"synthetic-{pairs}", args)
    results["uptime_at_end"] = _uptime()
    results["targets"] = verdict(results)
    print(json.dumps(results["targets"], indent=1), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
