"""Live training curves: TensorBoard event files mirroring metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nmt.artifacts.rundir import RunDir
from nmt.config import ConfigError
from nmt.training import reporting, train_from_config
from tests.conftest import FIXTURES, REPO, tiny_config

TINY = REPO / "configs" / "tiny" / "transformer.yaml"
SETS = [
    f"data.dir={FIXTURES}",
    f"tokenizer.model={FIXTURES / 'spm.tiny'}",
    "train.max_steps=4",
    "train.log_every=2",
    "train.valid_every=2",
    "train.valid_max_sentences=4",
    "train.keep_checkpoints=0",
]


def curves(run: Path) -> EventAccumulator:
    events = EventAccumulator(str(RunDir(run).tensorboard))
    events.Reload()
    return events


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("tb") / "run"
    train_from_config(TINY, SETS, run)  # train.tensorboard: auto, and the package is installed
    return run


def test_event_file_mirrors_metrics_jsonl(run: Path) -> None:
    events = curves(run)
    tags = set(events.Tags()["scalars"])
    expected = {"train/loss", "train/lr", "train/tokens_per_s", "valid/nll", "valid/ppl"}
    assert expected | {"valid/bleu"} <= tags
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for tag, key in [("train/loss", "loss"), ("train/lr", "lr"), ("valid/bleu", "valid_bleu")]:
        logged = [(r["step"], r[key]) for r in records if key in r]
        shown = [(e.step, e.value) for e in events.Scalars(tag)]
        assert [s for s, _ in shown] == [s for s, _ in logged] and logged
        assert [v for _, v in shown] == pytest.approx([v for _, v in logged], rel=1e-6)


def test_resume_continues_the_curves(run: Path, tmp_path: Path) -> None:
    train_from_config(None, ["train.max_steps=6"], None, resume=run)
    steps = [e.step for e in curves(run).Scalars("train/loss")]
    assert steps == [2, 4, 6]


def test_off_and_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    off = tmp_path / "off"
    quick = ["train.max_steps=1", "train.valid_bleu=false", "train.tensorboard=false"]
    train_from_config(TINY, SETS[:2] + quick, off)
    assert (off / "metrics.jsonl").is_file() and not RunDir(off).tensorboard.exists()
    cfg = tiny_config("lstm", **{"train.tensorboard": "true"})  # a YAML boolean
    assert cfg.train.tensorboard == "true" and reporting.use_tensorboard(cfg.train)
    monkeypatch.setattr(reporting.importlib.util, "find_spec", lambda name: None)
    assert not reporting.use_tensorboard(tiny_config("lstm").train)  # auto: quietly off
    with pytest.raises(ConfigError, match="pip install"):
        reporting.use_tensorboard(cfg.train)
