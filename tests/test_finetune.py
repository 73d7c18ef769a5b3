"""``nmt train --init``: fine-tuning starts from the parent's weights and tokenizer, in a
new run directory, with a fresh optimizer, schedule, best score and budget."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import load_checkpoint
from nmt.artifacts.rundir import RunDir
from nmt.cli.app import app
from nmt.training import train_from_config
from nmt.training.warmstart import ArchitectureMismatch, adopt_parent, load_warm_start
from tests.conftest import FIXTURES, REPO, tiny_config

TINY = REPO / "configs" / "tiny" / "transformer.yaml"
QUIET = ["train.log_every=1", "train.keep_checkpoints=0", "train.tensorboard=false"]


def _other_corpus(folder: Path) -> Path:
    """A corpus the parent never trained on: the fixtures' validation and test pairs."""
    folder.mkdir()
    for lang in ("de", "en"):
        lines = [
            line
            for split in ("val", "test")
            for line in (FIXTURES / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
        ]
        (folder / f"train.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
        shutil.copy(FIXTURES / f"val.{lang}", folder / f"val.{lang}")
    return folder


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """A tiny Transformer trained 12 steps on the fixtures (high lr: it learns quickly)."""
    run = tmp_path_factory.mktemp("parent") / "run"
    sets = [
        f"data.dir={FIXTURES}",
        f"tokenizer.model={FIXTURES / 'spm.tiny'}",
        "train.max_steps=12",
        "train.valid_every=12",
        "train.lr=0.01",
        "train.warmup_steps=2",
        "train.valid_bleu=false",
        *QUIET,
    ]
    assert train_from_config(TINY, sets, run).exit_code == 0
    return run


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in _records(run) if "loss" in r]


def test_fine_tuning_starts_from_the_parent_not_from_scratch(parent: Path, tmp_path: Path) -> None:
    data = _other_corpus(tmp_path / "data")
    before = _hashes(parent)
    sets = [
        f"data.dir={data}",
        "tokenizer.model=" + str(tmp_path / "no-such-tokenizer"),  # the checkpoint's is used
        "train.max_steps=3",
        "train.valid_every=3",
        "train.valid_max_sentences=5",
        *QUIET,
    ]
    args = ["train", str(TINY), "--init", str(parent), "--out", str(tmp_path / "ft")]
    result = CliRunner().invoke(app, args + [a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    scratch = tmp_path / "scratch"
    train_from_config(TINY, sets + [f"tokenizer.model={FIXTURES / 'spm.tiny'}"], scratch)

    parent_last = sum(_losses(parent)[-3:]) / 3
    first_ft, first_scratch = _losses(tmp_path / "ft")[0], _losses(scratch)[0]
    assert abs(first_ft - parent_last) < 0.5, (first_ft, parent_last)
    assert first_ft < first_scratch - 0.8, (first_ft, first_scratch)

    assert _hashes(parent) == before  # the parent is only read
    assert not (tmp_path / "no-such-tokenizer.model").exists()
    ft = RunDir(tmp_path / "ft")
    assert (
        ft.tokenizer_prefix.with_suffix(".model").read_bytes()
        == (FIXTURES / "spm.tiny.model").read_bytes()
    )
    best = parent / "best.safetensors"
    digest = hashlib.sha256(best.read_bytes()).hexdigest()
    recorded = json.loads(ft.parent.read_text())
    assert recorded["init_sha256"] == digest and recorded["init_from"] == str(best.resolve())
    first = _records(ft.path)[0]
    assert first["init_sha256"] == digest and "loss" not in first
    # fresh budget, schedule and best score: steps 1..3, warmup again, a new best
    assert [r["step"] for r in _records(ft.path) if "loss" in r] == [1, 2, 3]
    lrs = [r["lr"] for r in _records(ft.path) if "lr" in r]
    assert lrs[0] < lrs[-1]  # warming up again, not at the parent's decayed rate
    assert [r["best"] for r in _records(ft.path) if "valid_nll" in r] == [True]
    _, _, _, meta = load_checkpoint(ft.last)
    assert meta["step"] == 3


def test_a_fine_tuned_run_resumes_with_its_parents_tokenizer(parent: Path, tmp_path: Path) -> None:
    sets = [f"data.dir={_other_corpus(tmp_path / 'data')}", "train.valid_every=100", *QUIET]
    run = tmp_path / "ft"
    train_from_config(None, sets + ["train.max_steps=2"], run, init=parent)  # parent's config
    outcome = train_from_config(None, ["train.max_steps=3"], None, resume=run)
    assert outcome.state.step == 3
    assert [r["step"] for r in _records(run) if "loss" in r] == [1, 2, 3]


def test_another_architecture_is_refused_naming_the_keys(parent: Path, tmp_path: Path) -> None:
    warm = load_warm_start(parent)
    cfg = tiny_config("transformer", **{"model.transformer.ff_dim": "48"})
    with pytest.raises(ArchitectureMismatch, match=r"model\.transformer\.ff_dim: 64 -> 48"):
        adopt_parent(cfg, warm, RunDir(tmp_path / "ft"))
    with pytest.raises(ArchitectureMismatch, match=r"model\.type: transformer -> lstm"):
        adopt_parent(tiny_config("lstm"), warm, RunDir(tmp_path / "ft"))
    dropout = tiny_config("transformer", **{"model.transformer.dropout": "0.3"})
    adopted = adopt_parent(dropout, warm, RunDir(tmp_path / "ft"))  # dropout may change
    assert adopted.model == dropout.model
    assert adopted.tokenizer == dataclasses.replace(
        warm.cfg.tokenizer, model=str(tmp_path / "ft" / "tokenizer")
    )


def test_init_refuses_to_write_into_the_parents_directory(parent: Path) -> None:
    before = _hashes(parent)
    args = ["train", str(TINY), "--init", str(parent), "--out", str(parent), "--overwrite"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "holds the checkpoint that --init starts from" in " ".join(result.output.split())
    assert _hashes(parent) == before


def test_init_and_resume_do_not_combine(parent: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--init", str(parent), "--resume", str(parent)])
    assert result.exit_code == 2
    assert "--resume continues a run with its own config" in " ".join(result.output.split())
