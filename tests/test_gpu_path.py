"""The GPU training path: updates that never wait for the device, and what that changes.

On CUDA the host queues an update and goes on; it reads losses and skipped updates from
the device only every ``train.log_every`` updates (:mod:`nmt.training.ledger`). Most of
that path runs on the CPU too, and is tested here on the CPU by making the host read as
seldom as it would on a GPU. What only a GPU can show (that nothing in an update waits
for it) is checked when CUDA is there.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from nmt.artifacts.checkpoint import load_checkpoint
from nmt.config import load_config
from nmt.data.batch import pad_sequences
from nmt.data.store.batches import make_batch, plan_in_memory
from nmt.training import Trainer, TrainingError
from nmt.training.distributed import DistContext, accumulation_groups, shard_batches, update_tokens
from nmt.training.setup import load_corpora
from tests.conftest import REPO, tiny_config

CUDA = torch.cuda.is_available()


def _poison(trainer: Trainer, bad: dict) -> None:
    """Make the model's logits NaN for the next ``bad["left"]`` forward passes."""
    real = trainer.ddp

    def forward(*args):
        logits = real(*args)
        if bad["left"] > 0:
            bad["left"] -= 1
            return logits * float("nan")
        return logits

    trainer.ddp = forward


def _adam_steps(trainer: Trainer) -> int:
    return int(next(iter(trainer.optimizer.state.values()))["step"])


def test_skipped_updates_are_given_back_when_the_host_reads_late(tmp_path: Path) -> None:
    """The GPU path forced on the CPU: the host learns every 4 updates what the device
    skipped, yet steps, the stop on bad losses and the saved checkpoint come out as when
    it looks after every update (tests/test_interruption.py)."""
    sets = {"train.max_steps": "6", "train.max_bad_steps": "3", "train.valid_every": "100"}
    trainer = Trainer(tiny_config("lstm", **sets, **{"train.log_every": "4"}), tmp_path / "run")
    trainer.read_every = 4
    bad = {"left": 2}
    _poison(trainer, bad)
    state = trainer.train()
    assert state.step == 6 and _adam_steps(trainer) == 6  # 8 updates queued, 2 skipped
    logged = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["step"] for r in logged if "loss" in r] == [4]  # as without late reads
    trained = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    bad["left"] = 1000
    trainer.cfg.train.max_steps = 20
    with pytest.raises(TrainingError, match="3 consecutive non-finite losses"):
        trainer.train()
    assert trainer.state.step == 6 and _adam_steps(trainer) == 6
    saved, _, _, meta = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert meta["step"] == 6
    now = trainer.model.state_dict()
    for name, value in saved.state_dict().items():  # skipped on the device: weights untouched
        assert torch.equal(value, trained[name]) and torch.equal(value, now[name]), name


def test_a_skipped_update_leaves_weights_and_optimizer_untouched(tmp_path: Path) -> None:
    trainer = Trainer(tiny_config("transformer"), tmp_path / "run")
    batch = trainer.data.train.make_batch(trainer.epoch_shard()[0], trainer.tok)
    trainer.train_step([batch])
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    moments = {k: v["exp_avg"].clone() for k, v in trainer.optimizer.state.items()}
    _poison(trainer, {"left": 1})
    loss, tokens = trainer.train_step([batch])
    assert loss != loss and tokens == batch.n_tokens  # nan
    assert trainer.state.step == 1 and _adam_steps(trainer) == 1
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, trainer.optimizer.state[k]["exp_avg"]) for k, v in moments.items())
    loss, _ = trainer.train_step([batch])  # and the next good update is applied
    assert loss == loss and trainer.state.step == 2 and _adam_steps(trainer) == 2


def test_update_tokens_count_every_ranks_batches_without_a_collective() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(1, 30) for _ in range(23)]
    batches = [[i] for i in range(23)]

    def tokens_of(batch: list[int]) -> int:
        return lengths[batch[0]]

    for world, accumulate, start in [(1, 1, 0), (2, 2, 0), (3, 2, 2), (2, 3, 1)]:
        per_rank = [
            [sum(map(tokens_of, group)) for group in accumulation_groups(shard[start:], accumulate)]
            for shard in (shard_batches(batches, DistContext(r, world)) for r in range(world))
        ]
        expected = [sum(column) for column in zip(*per_rank)]
        assert len(expected) == len(per_rank[0])  # every rank makes as many updates
        for rank in range(world):  # each rank counts all of them alone
            ctx = DistContext(rank, world)
            assert update_tokens(batches, ctx, start, accumulate, tokens_of) == expected


def test_batches_and_token_counts_are_built_as_before(tok) -> None:
    """The one-copy padding and the host-side token count equal the plain row-by-row forms."""
    rng = random.Random(1)
    seqs = [[rng.randrange(4, 400) for _ in range(rng.randint(0, 12))] for _ in range(40)]
    seqs[3] = list(range(5, 17))  # the longest row
    padded = pad_sequences(seqs, tok.pad_id)
    assert padded.shape == (40, 12)
    for row, s in enumerate(seqs):
        assert padded[row].tolist() == s + [tok.pad_id] * (12 - len(s))
    corpus = load_corpora(tiny_config("lstm"), tok).train
    plan = plan_in_memory(corpus, 300, 1, 0)
    made = [make_batch(corpus, plan.batch(g), tok).n_tokens for g in range(len(plan))]
    assert [plan.tokens(g) for g in range(len(plan))] == made


def test_gpu_recipe_is_the_cpu_recipe_with_gpu_sized_updates() -> None:
    """Same model, tokenizer and data as the CPU de-en config (so the prepared data and
    tokenizer serve both), updates several times larger."""
    gpu = load_config(REPO / "configs" / "gpu" / "transformer-de-en.yaml")
    cpu = load_config(REPO / "configs" / "multi30k" / "de-en" / "transformer.yaml")
    assert (gpu.model, gpu.tokenizer, gpu.data) == (cpu.model, cpu.tokenizer, cpu.data)
    assert gpu.train.batch_tokens >= 4 * cpu.train.batch_tokens and gpu.train.device == "cuda"
    assert gpu.train.schedule == "budget" and 0 < gpu.train.max_minutes <= 5


@pytest.mark.skipif(not CUDA, reason="needs CUDA: checks that no training update waits for a GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_updates_never_wait_for_the_gpu(tmp_path: Path, precision: str) -> None:
    """Updates 3 to 10 of a real training loop run with CUDA's sync debug mode set to
    raise: a ``.item()``, a copy from pageable memory or any other wait fails the test.
    Reads at log and validation steps are legitimate waits, so they are out of range."""
    sets = {"train.device": "cuda", "train.precision": precision, "train.max_steps": "12"}
    sets |= {"train.log_every": "1000", "train.valid_every": "1000"}
    trainer = Trainer(tiny_config("transformer", **sets), tmp_path / "run")
    after_step = trainer._after_step

    def strict_between_updates(tokens: int) -> None:
        after_step(tokens)
        torch.cuda.set_sync_debug_mode("error" if 2 <= trainer.state.step < 10 else "default")

    trainer._after_step = strict_between_updates
    try:
        state = trainer.train()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert state.step == 12 and state.history[-1]["valid_nll"] < 10
