"""Data-parallel training on torch.distributed (gloo, CPU), accumulation and precision checks.

The central test starts 2 real processes (``torch.multiprocessing``, gloo on 127.0.0.1),
trains a tiny Transformer, and checks that both ranks end with identical weights, equal
within float tolerance to one process that accumulates 2 batches per update: the same
effective batch. Dropout is off so that the two set-ups compute the same function.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nmt.artifacts.checkpoint import load_checkpoint
from nmt.config import ConfigError
from nmt.data.store.batches import make_batch
from nmt.precision import check_precision
from nmt.training import Trainer, plans
from nmt.training.distributed import DistContext, accumulation_groups, process_group, shard_batches
from tests.conftest import FIXTURES, REPO, tiny_config

STEPS = 4
SETTINGS = {
    "train.max_steps": str(STEPS),
    "train.valid_every": "2",  # validation (rank 0) and its broadcast happen mid-run
    "train.valid_max_sentences": "5",
    "train.log_every": "2",
    "train.keep_checkpoints": "0",
    "train.clip_norm": "0",  # unclipped gradients are compared too (Adam hides their scale)
    "model.transformer.dropout": "0",
    "model.transformer.attention_dropout": "0",
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """One thread, like the workers: the same float summation order everywhere. Otherwise
    Adam turns round-off in gradients that are zero in theory (attention's key bias, which
    cannot change a softmax) into lr-sized steps, and those weights drift apart."""
    torch.set_num_threads(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    """One training process, as torchrun would start it (same environment variables)."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    # A short timeout turns a hang (ranks out of step) into an error instead of a stuck test.
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    try:
        with process_group(torch.device("cpu")):
            trainer = Trainer(tiny_config("transformer", **SETTINGS), Path(out) / "run")
            trainer.train()
            grads = {n: p.grad for n, p in trainer.model.named_parameters()}
            torch.save((trainer.model.state_dict(), grads), Path(out) / f"rank{rank}.pt")
        dist.barrier()  # leave together (see nmt.training.distributed.process_group)
    finally:
        dist.destroy_process_group()


def _updates(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "loss" in r]


def test_two_processes_match_one_process_with_accumulation(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0, grads0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1, grads1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    for name in grads0:
        assert torch.equal(grads0[name], grads1[name]), name

    single = Trainer(tiny_config("transformer", **SETTINGS, **{"train.accumulate": "2"}), tmp_path)
    single.train()
    reference = single.model.state_dict()
    initial = Trainer(tiny_config("transformer", **SETTINGS), tmp_path / "init").model.state_dict()
    for name in reference:
        assert torch.allclose(rank0[name], reference[name], atol=1e-5, rtol=1e-4), name
    assert any(not torch.allclose(initial[n], reference[n]) for n in reference)  # it trained
    for name, param in single.model.named_parameters():  # the last update's gradients
        assert torch.allclose(grads0[name], param.grad, rtol=1e-3, atol=1e-6), name

    ddp, acc = _updates(tmp_path / "run"), _updates(tmp_path)
    assert [r["step"] for r in ddp] == [2, 4]
    assert [r["tokens_per_update"] for r in ddp] == [r["tokens_per_update"] for r in acc]
    assert [r["loss"] for r in ddp] == pytest.approx([r["loss"] for r in acc], rel=1e-5)
    assert not (tmp_path / "run" / "ckpt").exists()  # keep_checkpoints 0


def _torchrun(*args: str) -> None:
    """``torchrun --standalone --nproc-per-node 2 -m nmt train ...`` (the documented launch)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd = [*launcher, "--nproc-per-node", "2", "-m", "nmt", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_torchrun_resume_restores_every_rank(tmp_path: Path) -> None:
    """With dropout on, 4 steps + resume to 6 = 6 steps straight, bit for bit: each rank's
    random stream, the optimizer and the data position all come back."""
    base = [str(REPO / "configs/tiny/transformer.yaml"), "--device", "cpu"]
    sets = [f"data.dir={FIXTURES}", f"tokenizer.model={FIXTURES}/spm.tiny", "train.valid_every=2"]
    sets = [x for s in [*sets, "train.valid_max_sentences=4"] for x in ("--set", s)]
    _torchrun(*base, "--out", str(tmp_path / "straight"), *sets, "--set", "train.max_steps=6")
    _torchrun(*base, "--out", str(tmp_path / "resumed"), *sets, "--set", "train.max_steps=4")
    order = tmp_path / "resumed" / "plans" / "epoch-0" / "order.bin"
    planned = order.stat()
    _torchrun("--resume", str(tmp_path / "resumed"), "--set", "train.max_steps=6")
    again = order.stat()  # the resumed run read the same plan file: not planned again
    assert (again.st_ino, again.st_mtime_ns) == (planned.st_ino, planned.st_mtime_ns)
    log = (tmp_path / "resumed" / "train.log").read_text(encoding="utf-8")
    assert log.count("epoch 1 planned") == 1 and "resumed at step 4 (epoch 1," in log
    straight = load_checkpoint(tmp_path / "straight" / "last.safetensors")[0].state_dict()
    resumed = load_checkpoint(tmp_path / "resumed" / "last.safetensors")[0].state_dict()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    steps = [r["step"] for r in _updates(tmp_path / "resumed")]
    assert steps == [4]  # one log line per logged step: rank 0 logs alone (log_every 4)
    state = torch.load(tmp_path / "resumed" / "last.state.pt", weights_only=True)
    assert len(state["rng_per_rank"]) == 2 and state["trainer"]["world_size"] == 2


def _planning_worker(rank: int, world: int, port: int, out: str) -> None:
    """Open a run's first epoch on 2 ranks, sharing a run directory and then each in its
    own (as on two nodes that do not share it); count who plans, and in which way."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank))
    os.environ.update(WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    counts = {"written": 0, "in_memory": 0}

    def counted(name: str, original: Callable) -> Callable:
        def call(*args: object, **kwargs: object) -> object:
            counts[name] += 1
            return original(*args, **kwargs)

        return call

    plans.write_plan = counted("written", plans.write_plan)  # this process's module only
    plans.plan_in_memory = counted("in_memory", plans.plan_in_memory)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    try:
        record = {}
        for name, run in (("shared", "run"), ("separate", f"run-{rank}")):
            counts.update(written=0, in_memory=0)
            trainer = Trainer(tiny_config("transformer", **PLANNED), Path(out) / run)
            shard = [b.tolist() for b in trainer.epoch_shard()]
            record[name] = {**counts, "shard": shard}
        Path(out, f"plan{rank}.json").write_text(json.dumps(record))
        dist.barrier()
    finally:
        dist.destroy_process_group()


PLANNED = {"train.batch_tokens": "300"}


def test_rank_0_plans_once_and_each_rank_reads_its_shard(tmp_path: Path) -> None:
    mp.spawn(_planning_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"plan{r}.json").read_text()) for r in (0, 1)]
    for name in ("shared", "separate"):
        assert ranks[0][name]["written"] == 1 and ranks[1][name]["written"] == 0, name
    assert ranks[1]["shared"]["in_memory"] == 0  # it read rank 0's file
    assert ranks[1]["separate"]["in_memory"] == 1  # no file in its directory: planned alone
    assert ranks[0]["shared"]["shard"] == ranks[0]["separate"]["shard"]
    assert ranks[1]["shared"]["shard"] == ranks[1]["separate"]["shard"]
    assert [p.name for p in (tmp_path / "run" / "plans").iterdir()] == ["epoch-0"]

    single = Trainer(tiny_config("transformer", **PLANNED), tmp_path / "single").epoch_shard()
    shards = [r["shared"]["shard"] for r in ranks]
    per_rank = len(single) // 2
    assert len(shards[0]) == len(shards[1]) == per_rank
    interleaved = [b for pair in zip(*shards) for b in pair]
    assert interleaved == [b.tolist() for b in single[: 2 * per_rank]]  # batch j*2 + rank
    seen = [{i for b in shard for i in b} for shard in shards]
    assert seen[0] and not seen[0] & seen[1]


def test_shards_are_disjoint_equal_and_cover_the_first_batches() -> None:
    batches = list(range(11))
    shards = [shard_batches(batches, DistContext(r, 3)) for r in range(3)]
    assert shards == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    first_two = sorted(b for s in shards for b in s[:2])
    assert first_two == batches[:6]  # k batches per rank = the epoch's first k * world
    assert shard_batches(batches, DistContext()) == batches
    assert list(accumulation_groups([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]


def test_accumulation_equals_one_big_batch(tmp_path: Path) -> None:
    """2 accumulated micro-batches give the gradient of the 2 batches merged into one.

    Gradients, not weights, are compared: Adam's first step is about lr * sign(gradient),
    which would turn round-off in near-zero gradients into lr-sized differences.
    """
    off = {"model.lstm.dropout": "0", "train.max_steps": "1"}
    two = Trainer(tiny_config("lstm", **off, **{"train.accumulate": "2"}), tmp_path / "a")
    one = Trainer(tiny_config("lstm", **off), tmp_path / "b")
    first, second = two.epoch_shard()[:2]
    micro = [make_batch(two.data.train, b, two.tok) for b in (first, second)]
    merged = make_batch(one.data.train, [*first, *second], one.tok)
    assert two.train_step(micro) == pytest.approx(one.train_step([merged]), rel=1e-6)
    for (name, a), b in zip(two.model.named_parameters(), one.model.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-7), name


def test_fp16_is_refused_on_cpu() -> None:
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        tiny_config("lstm", **{"train.precision": "fp16", "train.device": "cpu"})
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        check_precision("fp16", torch.device("cpu"))
    with pytest.raises(ConfigError, match="train.device"):
        tiny_config("lstm", **{"train.device": "gpu"})


def test_bf16_trains_validates_and_searches_on_cpu(tmp_path: Path) -> None:
    cfg = tiny_config(
        "transformer",
        **{"train.precision": "bf16", "train.max_steps": "2", "train.valid_every": "2"},
    )
    trainer = Trainer(cfg, tmp_path)
    state = trainer.train()
    record = state.history[-1]
    assert state.step == 2 and torch.isfinite(torch.tensor(record["valid_nll"]))
    assert 0 <= record["valid_bleu"] <= 100
