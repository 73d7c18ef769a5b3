"""End to end through the command line: data from the mirror -> train -> translate -> evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nmt.cli.app import app
from tests.conftest import FIXTURES, REPO, mirror_dir

runner = CliRunner()


def nmt(*args: str):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def multi30k(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("multi30k")
    result = nmt("data", "multi30k", "--out", out, "--langs", "de", "en", "--mirror", mirror_dir())
    assert result.exit_code == 0, result.output
    return out


def test_data_command_writes_text_files(multi30k: Path) -> None:
    for split, n in [("train", 29000), ("val", 1014), ("test_2016_flickr", 1000)]:
        for lang in ("de", "en"):
            assert len((multi30k / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()) == n


def test_end_to_end(multi30k: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = nmt(
        "train",
        REPO / "configs/tiny/transformer.yaml",
        "--out",
        run,
        "--set",
        f"data.dir={multi30k}",
        "--set",
        f"tokenizer.model={tmp_path}/spm",
        "--set",
        "tokenizer.vocab_size=300",
        "--set",
        "train.max_steps=6",
        "--set",
        "train.valid_every=3",
        "--set",
        "train.valid_max_sentences=10",
    )
    assert result.exit_code == 0, result.output
    for name in (
        "config.yaml",
        "tokenizer.model",
        "best.safetensors",
        "last.safetensors",
        "last.state.pt",
        "metrics.jsonl",
        "train.log",
    ):
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "valid_bleu" in r] == [3, 6]
    (tmp_path / "src.de").write_text(
        "\n".join((multi30k / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[:25])
        + "\n",
        encoding="utf-8",
    )
    hyp = tmp_path / "hyp.en"
    result = nmt("translate", run, "-i", tmp_path / "src.de", "-o", hyp, "--beam", "2")
    assert result.exit_code == 0, result.output
    assert len(hyp.read_text(encoding="utf-8").splitlines()) == 25
    ref = tmp_path / "ref.en"
    ref.write_text(
        "\n".join((multi30k / "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()[:25])
        + "\n",
        encoding="utf-8",
    )
    result = nmt("evaluate", "--hyp", hyp, "--ref", ref, "--json")
    scores = json.loads(result.output)
    assert scores["n"] == 25 and "bleu_signature" in scores and 0 <= scores["bleu"] <= 100
    result = nmt("evaluate", run / "last.safetensors", "--src", tmp_path / "src.de", "--ref", ref)
    assert result.exit_code == 0 and "BLEU" in result.output


def test_resume_continues_a_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    base = ["--set", f"data.dir={FIXTURES}", "--set", f"tokenizer.model={FIXTURES}/spm.tiny"]
    assert (
        nmt(
            "train",
            REPO / "configs/tiny/lstm.yaml",
            "--out",
            run,
            *base,
            "--set",
            "train.max_steps=4",
        ).exit_code
        == 0
    )
    result = nmt("train", "--resume", run, "--set", "train.max_steps=8")
    assert result.exit_code == 0, result.output
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 8 and 4 in steps


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "no/such.yaml"], "cannot read config no/such.yaml"),
        (
            ["train", str(REPO / "configs/tiny/lstm.yaml"), "--set", "train.lrr=1"],
            "did you mean 'lr'",
        ),
        (["translate", "no/such/run"], "does not exist"),
        (
            ["evaluate", "--hyp", str(FIXTURES / "val.en"), "--ref", str(FIXTURES / "train.en")],
            "has 60 lines but",
        ),
    ],
)
def test_user_errors_are_one_line(args: list[str], message: str) -> None:
    result = nmt(*args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_console_script_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nmt", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    for command in ("data", "tokenize", "train", "translate", "evaluate"):
        assert command in out
