"""Subword regularization: training pairs re-sampled each epoch, seeded, exact on resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nmt.artifacts.checkpoint import load_train_state
from nmt.config import ConfigError
from nmt.training import train_from_config
from nmt.training.setup import load_corpora, prepare_tokenizer
from tests.conftest import FIXTURES, REPO, tiny_config

TINY = REPO / "configs" / "tiny" / "lstm.yaml"
SAMPLING = ["tokenizer.sample_alpha=0.1"]


def _corpora(**overrides: str):
    cfg = tiny_config("lstm", **overrides)
    return load_corpora(cfg, prepare_tokenizer(cfg))


def test_each_epoch_has_its_own_sample_and_the_seed_fixes_it() -> None:
    data = _corpora(**{"tokenizer.sample_alpha": "0.1"})
    best = data.train
    epoch0, epoch1 = data.start_epoch(0), data.start_epoch(1)
    assert epoch0.src != epoch1.src and epoch0.tgt != epoch1.tgt
    assert epoch0.src != best.src  # sampled, not the best segmentation
    again = _corpora(**{"tokenizer.sample_alpha": "0.1"})
    assert again.start_epoch(1).src == epoch1.src and again.start_epoch(0).tgt == epoch0.tgt
    other_seed = _corpora(**{"tokenizer.sample_alpha": "0.1", "train.seed": "2"})
    assert other_seed.start_epoch(0).src != epoch0.src


def test_validation_is_never_sampled_and_off_means_the_best_segmentation() -> None:
    plain = _corpora()
    sampled = _corpora(**{"tokenizer.sample_alpha": "0.1"})
    sampled.start_epoch(3)
    assert sampled.valid.src == plain.valid.src and sampled.valid.tgt == plain.valid.tgt
    assert plain.start_epoch(0) is plain.train and plain.start_epoch(1).src == plain.train.src


def _losses(run: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def test_resume_with_sampling_gives_the_same_losses(tmp_path: Path) -> None:
    """10 steps + resume to 12 == 12 steps straight; the resume lands in the second epoch,
    whose sample the resumed process draws without having drawn the first's."""
    sets = [
        f"data.dir={FIXTURES}",
        f"tokenizer.model={FIXTURES / 'spm.tiny'}",
        "train.log_every=1",
        "train.valid_every=100",
        "train.batch_tokens=2500",
        "train.keep_checkpoints=0",
        "train.tensorboard=false",
        *SAMPLING,
    ]
    train_from_config(TINY, sets + ["train.max_steps=12"], tmp_path / "straight")
    train_from_config(TINY, sets + ["train.max_steps=10"], tmp_path / "split")
    saved = load_train_state(tmp_path / "split" / "last.state.pt")["trainer"]
    assert saved["epoch"] >= 1 and saved["batch_in_epoch"] > 0
    train_from_config(None, ["train.max_steps=12"], None, resume=tmp_path / "split")
    straight, split = _losses(tmp_path / "straight"), _losses(tmp_path / "split")
    assert sorted(split) == list(range(1, 13))
    for step in range(1, 13):
        assert abs(straight[step] - split[step]) <= 1e-6, step
    plain = tmp_path / "plain"
    train_from_config(TINY, sets + ["train.max_steps=1", "tokenizer.sample_alpha=0"], plain)
    assert _losses(plain)[1] != pytest.approx(straight[1], abs=1e-6)  # sampling changed the data


@pytest.mark.parametrize(
    "sets, message",
    [
        (["tokenizer.nbest_size=0"], "nbest_size"),
        (["tokenizer.sample_alpha=1.5"], "merge-dropout"),
        (["tokenizer.sample_alpha=-0.1"], "sample_alpha"),
    ],
)
def test_bad_sampling_settings_are_config_errors(sets: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tiny_config("lstm", **dict(s.split("=") for s in sets))
