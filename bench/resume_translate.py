"""Huge-file translation that survives kill -9: `nmt translate --resume`, measured.

    python bench/resume_translate.py --lines 1000000 --kills 3

1. A tiny, fast model (the tiny Transformer config, untrained, greedy, at most 4 output
   tokens: the bench measures the file handling, not translation quality) and an input
   of ``--lines`` lines: the Multi30k test sentences repeated.
2. One uninterrupted ``nmt translate`` (its own process): the reference output, its
   wall time and peak RSS (``ru_maxrss`` of the child, from ``os.wait4``).
3. ``nmt translate --resume`` killed with SIGKILL at ``--kills`` random points (a random
   line count reached, then a random delay inside the next chunk), rerun each time, and
   once more to the end: the output must be byte-identical to the reference.
4. Peak RSS of translating ``--small`` lines: memory is flat in the number of lines when
   the big runs peak within 10% of it.

Writes a JSON report (``--report``) and prints it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = Path("/work/main/data/multi30k/test_2016_flickr.de")


def make_model(directory: Path) -> Path:
    import torch

    from nmt.artifacts.checkpoint import save_checkpoint
    from nmt.config import load_config
    from nmt.models import build_model
    from nmt.tokenizer import Tokenizer

    fixtures = REPO / "tests" / "fixtures"
    sets = [f"data.dir={fixtures}", f"tokenizer.model={fixtures / 'spm.tiny'}"]
    sets += ["search.beam=1", "search.max_len_a=0", "search.max_len_b=4", "search.batch_size=64"]
    cfg = load_config(REPO / "configs" / "tiny" / "transformer.yaml", sets)
    tok = Tokenizer.load(fixtures / "spm.tiny", joint=True)
    torch.manual_seed(0)
    model = build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, tok.pad_id)
    path = directory / "tiny.safetensors"
    save_checkpoint(path, model.eval(), tok, cfg)
    return path


def make_input(path: Path, source: Path, lines: int) -> None:
    sentences = source.read_text(encoding="utf-8").splitlines()
    with open(path, "w", encoding="utf-8") as f:
        for i in range(lines):
            f.write(sentences[i % len(sentences)] + "\n")


def command(model: Path, src: Path, out: Path, resume: bool, chunk: int) -> list[str]:
    cmd = [sys.executable, "-m", "nmt", "--quiet", "translate", str(model), "-i", str(src)]
    return cmd + ["-o", str(out), "--chunk-lines", str(chunk)] + (["--resume"] if resume else [])


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def run(
    cmd: list[str], kill_at: int | None = None, progress: Path | None = None, delay: float = 0
) -> dict:
    """Run ``cmd``; with ``kill_at``, SIGKILL it once ``progress`` records that many lines
    and a random part of ``delay`` seconds has passed. Returns exit status, wall time,
    peak RSS and the lines recorded at the kill."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stderr=subprocess.DEVNULL)
    ended = None  # (pid, status, rusage) once reaped
    killed_after = None
    if kill_at is not None:
        while (ended := _reap(proc.pid, os.WNOHANG)) is None and recorded(progress) < kill_at:
            time.sleep(0.05)
        if ended is None:
            time.sleep(random.uniform(0, delay))
            if (ended := _reap(proc.pid, os.WNOHANG)) is None:
                killed_after = recorded(progress)
                os.kill(proc.pid, signal.SIGKILL)
    _, status, usage = ended or _reap(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "rc": proc.returncode,
        "seconds": round(time.monotonic() - start, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "killed_at_recorded_lines": killed_after,
    }


def _reap(pid: int, flags: int) -> tuple | None:
    """``os.wait4``: the child's status and resource use, or None while it runs."""
    got = os.wait4(pid, flags)
    return got if got[0] else None


def recorded(progress: Path | None) -> int:
    try:
        return json.loads(progress.read_text())["lines"]
    except (OSError, ValueError, TypeError):
        return 0


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=10_000, help="lines of the memory baseline")
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--chunk-lines", type=int, default=10_000)
    ap.add_argument("--source", type=Path, default=SOURCE)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report", type=Path, default=REPO / "bench/results/resume_translate.json")
    args = ap.parse_args()
    random.seed(args.seed)
    work = Path(tempfile.mkdtemp(prefix="resume-bench-"))
    model = make_model(work)
    big, small = work / "big.de", work / "small.de"
    make_input(big, args.source, args.lines)
    make_input(small, args.source, args.small)

    baseline = run(command(model, small, work / "small.en", False, args.chunk_lines))
    reference = run(command(model, big, work / "reference.en", False, args.chunk_lines))
    out = work / "out.en"
    progress = work / "out.en.part.progress"
    # Kill once a random line is recorded (a chunk boundary), then within the next chunk,
    # never in the last one: every kill interrupts a run.
    targets = sorted(random.sample(range(1, args.lines - args.chunk_lines), args.kills))
    resume = command(model, big, out, True, args.chunk_lines)
    chunk_s = 0.8 * args.chunk_lines * reference["seconds"] / args.lines
    runs = [run(resume, kill_at=t, progress=progress, delay=chunk_s) for t in targets]
    runs.append(run(resume))
    identical = out.exists() and sha256(out) == sha256(work / "reference.en")
    peak = max(r["peak_rss_mib"] for r in [reference, *runs])
    report = {
        "host": os.uname().nodename,
        "cpus": os.cpu_count(),
        "lines": args.lines,
        "chunk_lines": args.chunk_lines,
        "kill_targets_lines": targets,
        "small_run": baseline,
        "uninterrupted_run": reference,
        "resumed_runs": runs,
        "kills": sum(r["killed_at_recorded_lines"] is not None for r in runs),
        "identical_to_uninterrupted": identical,
        "peak_rss_ratio_to_small": round(peak / baseline["peak_rss_mib"], 3),
        "memory_flat_within_10pct": peak <= 1.1 * baseline["peak_rss_mib"],
        "lines_per_s_uninterrupted": round(args.lines / reference["seconds"], 1),
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    shutil.rmtree(work)
    if not identical:
        sys.exit(1)


if __name__ == "__main__":
    main()
