"""Where a training update's time goes: phases, operators, and the share of the matmul peak.

    python bench/profile_train.py --config configs/transformer.yaml --steps 30 \
        --json bench/results/profile_train.json

Measured in one process on the real Multi30k batches of ``--config``:

- the bf16 (and fp32) matmul peak of this host: GFLOP/s of a square 2048 x 2048 GEMM,
  the best of ten repetitions (the peak that training's share is measured against);
- FLOPs per target token of the timed updates (forward + backward), counted by
  ``torch.utils.flop_counter.FlopCounterMode`` on the actual batches, not estimated;
- per phase (batch to tensors, forward, loss, backward, clip + optimizer), wall seconds
  over ``--steps`` updates after ``--warmup``;
- per operator, the top of ``torch.profiler``'s self-CPU-time table;
- target tokens/s and the share of the bf16 peak it amounts to:
  tokens/s x FLOPs per token / peak.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def matmul_gflops(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """Best GFLOP/s of an (n x n) @ (n x n) product in ``dtype`` on this host."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def host() -> dict:
    """The CPU model as lscpu names it, and the load when the bench started."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(
        (k.strip(), v.strip())
        for k, v in (ln.split(":", 1) for ln in lscpu.splitlines() if ":" in ln)
    )
    return {
        "cpu": fields.get("Model name"),
        "family": fields.get("CPU family"),
        "model": fields.get("Model"),
        "cores": torch.get_num_threads(),
        "load_1min": Path("/proc/loadavg").read_text().split()[0],
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def trainer_and_batches(config: Path, precision: str, count: int, overrides: list[str]):
    from nmt.config import load_config
    from nmt.data.store.batches import make_batch
    from nmt.training import Trainer

    cfg = load_config(config, [f"train.precision={precision}", *overrides])
    trainer = Trainer(cfg, Path("/tmp/nmt-bench-profile"))
    plans = trainer.epoch_shard()[:count]
    start = time.perf_counter()
    batches = [make_batch(trainer.data.train, idx, trainer.tok) for idx in plans]
    data_s = (time.perf_counter() - start) / len(plans)
    return trainer, batches, data_s


def phases(trainer, batches) -> dict[str, float]:
    """Seconds per phase summed over ``batches`` (one update each), the loop's own calls."""
    from nmt.precision import autocast
    from nmt.training.loss import smoothed_cross_entropy

    t, pad = trainer.cfg.train, trainer.tok.pad_id
    model, opt = trainer.model, trainer.opt
    model.train()
    out = {"forward": 0.0, "loss": 0.0, "backward": 0.0, "optimizer": 0.0}
    for batch in batches:
        t0 = time.perf_counter()
        opt.optimizer.zero_grad(set_to_none=True)
        with autocast(t.precision, batch.src.device):
            logits = model(batch.src, batch.src_mask, batch.tgt_in)  # (B, T, V)
        t1 = time.perf_counter()
        loss = smoothed_cross_entropy(
            logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=pad,
            label_smoothing=t.label_smoothing,
        )  # fmt: skip
        loss = loss / batch.n_tokens
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        opt.apply(model.parameters(), t.clip_norm, torch.isfinite(loss))
        t4 = time.perf_counter()
        for k, a, b in (
            ("forward", t0, t1),
            ("loss", t1, t2),
            ("backward", t2, t3),
            ("optimizer", t3, t4),
        ):
            out[k] += b - a
    return out


def flops_per_token(trainer, batches) -> float:
    """Matrix FLOPs of full updates (forward + backward) over ``batches``, per target
    token: counted by FlopCounterMode (padding included: it is work the host does)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        for batch in batches:
            trainer.train_step([batch])
    return counter.get_total_flops() / sum(b.n_tokens for b in batches)


def operator_table(trainer, batches, rows: int) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches:
            trainer.train_step([batch])
    table = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in table)
    return [
        {
            "op": e.key,
            "self_ms": e.self_cpu_time_total / 1e3,
            "share": e.self_cpu_time_total / total,
            "calls": e.count,
        }
        for e in table[:rows]
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=REPO / "configs" / "transformer.yaml")
    p.add_argument("--precision", default="bf16")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rows", type=int, default=25)
    p.add_argument("--set", action="append", default=[], help="config overrides")
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    info = {
        "host": host(),
        "config": str(args.config),
        "precision": args.precision,
        "set": args.set,
    }
    info["peak_gflops"] = {
        "bf16": matmul_gflops(torch.bfloat16),
        "fp32": matmul_gflops(torch.float32),
    }
    trainer, batches, data_s = trainer_and_batches(
        args.config, args.precision, args.warmup + 2 * args.steps + 1, args.set
    )
    warm, timed, profiled = (
        batches[: args.warmup],
        batches[args.warmup : args.warmup + args.steps],
        batches[args.warmup + args.steps : -1],
    )
    for b in warm:
        trainer.train_step([b])
    tokens = sum(b.n_tokens for b in timed)
    start = time.perf_counter()
    ph = phases(trainer, timed)
    seconds = time.perf_counter() - start
    ph["data"] = data_s * len(timed)
    info["updates"] = len(timed)
    info["target_tokens_per_s"] = tokens / seconds
    info["phase_seconds"] = ph
    info["phase_share"] = {k: v / (seconds + ph["data"]) for k, v in ph.items()}
    info["flops_per_target_token"] = flops_per_token(trainer, timed)
    info["share_of_bf16_peak"] = (
        info["target_tokens_per_s"]
        * info["flops_per_target_token"]
        / (info["peak_gflops"]["bf16"] * 1e9)
    )
    info["operators"] = operator_table(trainer, profiled, args.rows)
    print(json.dumps({k: v for k, v in info.items() if k != "operators"}, indent=1))
    for row in info["operators"]:
        print(f"{row['share']:6.1%} {row['self_ms']:9.1f} ms {row['calls']:6d}  {row['op']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    main()
