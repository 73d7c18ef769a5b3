"""Loading never executes code; downloads and paths are checked."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import CheckpointError, load_checkpoint, load_train_state
from nmt.cli.app import app
from nmt.training import train_from_config
from tests.conftest import FIXTURES, REPO

runner = CliRunner()


class _Exploit:
    """Unpickling this object would create a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _evil(tmp_path: Path, name: str) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"state_dict": _Exploit(marker)}, protocol=2))
    return path, marker


@pytest.mark.parametrize("name", ["model.pt", "model.safetensors", "last.safetensors"])
def test_pickle_checkpoint_is_refused_without_running(tmp_path: Path, name: str) -> None:
    path, marker = _evil(tmp_path, name)
    result = runner.invoke(app, ["translate", str(path)])
    assert result.exit_code == 2 and "not a readable nmt checkpoint" in result.output
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_pickle_training_state_is_refused_without_running(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_from_config(
        REPO / "configs/tiny/lstm.yaml",
        [f"data.dir={FIXTURES}", f"tokenizer.model={FIXTURES / 'spm.tiny'}", "train.max_steps=2"],
        run,
    )
    evil, marker = _evil(tmp_path, "state.pt")
    (run / "last.state.pt").write_bytes(evil.read_bytes())
    with pytest.raises(CheckpointError, match="not a loadable training state"):
        load_train_state(run / "last.state.pt")
    result = runner.invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 2 and "not a loadable training state" in result.output
    assert not marker.exists()


@pytest.mark.parametrize("lang", ["../../etc", "de/../../x", "xx"])
def test_data_paths_cannot_escape_the_target(tmp_path: Path, lang: str) -> None:
    out = tmp_path / "a" / "b"
    result = runner.invoke(app, ["data", "multi30k", "--out", str(out), "--langs", lang])
    assert result.exit_code == 2 and "error:" in result.output
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
