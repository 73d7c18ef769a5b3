"""``nmt train --out DIR`` never mixes two runs: a run there is refused (files untouched)
unless ``--overwrite``, which deletes all of the old run's files first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nmt.artifacts.rundir import RunDir
from nmt.cli.app import app
from tests.conftest import FIXTURES, REPO

TINY = REPO / "configs" / "tiny" / "lstm.yaml"
SETS = [
    f"data.dir={FIXTURES}",
    f"tokenizer.model={FIXTURES / 'spm.tiny'}",
    "train.log_every=1",
    "train.valid_every=1",
    "train.valid_bleu=false",
    "train.valid_max_sentences=4",
    "train.keep_checkpoints=3",
]


def train(run: Path, steps: int, *extra: str):
    sets = SETS + [f"train.max_steps={steps}"]
    args = ["train", str(TINY), "--out", str(run), *extra]
    return CliRunner().invoke(app, args + [a for s in sets for a in ("--set", s)])


def said(result, text: str) -> bool:
    return text in " ".join(result.output.split())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def old_run(tmp_path_factory) -> Path:
    """A run of 4 steps with a checkpoint at every step (the newest 3 kept)."""
    run = tmp_path_factory.mktemp("old") / "run"
    result = train(run, 4)
    assert result.exit_code == 0, result.output
    assert len(RunDir(run).step_checkpoints()) == 3
    return run


def test_a_directory_holding_a_run_is_refused_and_left_untouched(old_run: Path) -> None:
    before = snapshot(old_run)
    result = train(old_run, 2)
    assert result.exit_code == 2
    assert said(result, f"{old_run} already holds a run")
    assert said(result, f"nmt train --resume {old_run}") and said(result, "--overwrite")
    assert snapshot(old_run) == before


def test_overwrite_deletes_every_file_of_the_old_run(old_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name, data in snapshot(old_run).items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(data)
    (run / "notes.txt").write_text("mine", encoding="utf-8")  # not a run file: kept
    result = train(run, 2, "--overwrite", "--set", "train.tensorboard=auto")
    assert result.exit_code == 0, result.output
    assert [p.name for p in RunDir(run).step_checkpoints()] == [
        "step_1.safetensors",
        "step_2.safetensors",
    ]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]
    assert (run / "train.log").read_text().count("training stopped") == 1
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1  # the old run's event files are gone
    assert (run / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_an_empty_directory_is_a_new_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    result = train(run, 1)
    assert result.exit_code == 0, result.output
    assert RunDir(run).is_resumable()


def test_clear_lists_only_run_files(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    for path in (run.config, run.metrics, run.step_checkpoint(3), run.tensorboard / "ev"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x", encoding="utf-8")
    (tmp_path / "keep.txt").write_text("x", encoding="utf-8")
    assert run.holds_run()
    run.clear()
    assert not run.holds_run() and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
