"""Bad input gives one clear line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import save_checkpoint
from nmt.cli.app import app
from nmt.tokenizer import train_sentencepiece
from tests.conftest import FIXTURES, REPO, mirror_dir, tiny_config, tiny_model

runner = CliRunner()
TINY = str(REPO / "configs" / "tiny" / "transformer.yaml")


def fails_with(args: list, message: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tok) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_checkpoint(path, tiny_model("transformer", tok), tok, tiny_config("transformer"))
    return path


def test_missing_files(tmp_path: Path, ckpt: Path) -> None:
    fails_with(["translate", ckpt, "-i", tmp_path / "nope.de"], "nope.de")
    fails_with(["evaluate", "--hyp", tmp_path / "h", "--ref", FIXTURES / "val.en"], "h")
    fails_with(["train", tmp_path / "missing.yaml"], "cannot read config")


def _train_on(data_dir: Path) -> list:
    """``nmt train`` on the tiny config with its data read from ``data_dir``."""
    tokenizer = f"tokenizer.model={FIXTURES / 'spm.tiny'}"
    return [
        "train",
        TINY,
        "--out",
        data_dir / "run",
        "--set",
        f"data.dir={data_dir}",
        "--set",
        tokenizer,
    ]


def test_parallel_corpus_with_different_line_counts(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "train.de", tmp_path / "train.de")
    lines = (FIXTURES / "train.en").read_text(encoding="utf-8").splitlines()[:-3]
    (tmp_path / "train.en").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for split in ("val.de", "val.en"):
        shutil.copy(FIXTURES / split, tmp_path / split)
    fails_with(_train_on(tmp_path), "has 400 lines but")


def test_empty_files(tmp_path: Path, ckpt: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    fails_with(["evaluate", "--hyp", empty, "--ref", empty], "is empty")
    for name in ("train.de", "train.en", "val.de", "val.en"):
        (tmp_path / name).write_text("", encoding="utf-8")
    fails_with(_train_on(tmp_path), "is empty")


def test_non_utf8_input_names_file_and_line(tmp_path: Path, ckpt: Path) -> None:
    bad = tmp_path / "bad.de"
    bad.write_bytes(b"Ein Hund.\nZwei \xff\xfe Katzen.\n")
    fails_with(["translate", ckpt, "-i", bad], "bad.de, line 2: not valid UTF-8")
    result = runner.invoke(app, ["translate", str(ckpt), "-i", str(bad), "--errors", "replace"])
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 2
    fails_with(["evaluate", "--hyp", bad, "--ref", bad], "bad.de, line 2: not valid UTF-8")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.bach_tokens=5", "key 'train.bach_tokens' (did you mean 'batch_tokens'?)"),
        ("train.lr=fast", "train.lr: expected float"),
        ("train.batch_tokens=-1", "train.batch_tokens must be positive"),
        ("model.type=rnn", "model.type: 'rnn' is not one of"),
    ],
)
def test_bad_configs(override: str, message: str) -> None:
    fails_with(["train", TINY, "--set", override], message)


def test_bad_checkpoints(tmp_path: Path, ckpt: Path) -> None:
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    fails_with(["translate", truncated], "is not a readable nmt checkpoint")
    text = tmp_path / "notes.txt"
    text.write_text("hello\n", encoding="utf-8")
    fails_with(["translate", text], "is not a readable nmt checkpoint")
    fails_with(["translate", tmp_path], "holds no checkpoint")


def test_checkpoint_with_another_tokenizer(tmp_path: Path, tok) -> None:
    """Weights sized for one vocabulary cannot be paired with another tokenizer."""
    from nmt.tokenizer import Tokenizer

    train_sentencepiece([FIXTURES / "train.en"], tmp_path / "other", 200)
    other = Tokenizer.load(tmp_path / "other", joint=True)
    path = tmp_path / "mixed.safetensors"
    save_checkpoint(path, tiny_model("transformer", tok), other, tiny_config("transformer"))
    fails_with(["translate", path], "weights do not fit")


def test_bad_mirrors(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("train.de.gz", "train.en.gz", "val.de.gz", "val.en.gz"):
        shutil.copy(mirror_dir() / name, mirror / name)
    fails_with(
        ["data", "multi30k", "--out", tmp_path / "out", "--mirror", mirror], "test_2016_flickr"
    )
    shutil.copy(mirror_dir() / "test_2016_flickr.de.gz", mirror / "test_2016_flickr.de.gz")
    shutil.copy(mirror_dir() / "val.de.gz", mirror / "test_2016_flickr.en.gz")  # wrong content
    fails_with(
        ["data", "multi30k", "--out", tmp_path / "out", "--mirror", mirror],
        "checksum mismatch for test_2016_flickr.en.gz",
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--beam", "0"], "--beam must be at least 1"),
        (["--beam", "-3"], "--beam must be at least 1"),
        (["--nbest", "4", "--beam", "2"], "--nbest must be between 1 and the beam size"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--length-penalty", "-1"], "--length-penalty must not be negative"),
        (["--precision", "fp8"], "precision must be one of"),
        (["--errors", "ignore"], "--errors must be strict or replace"),
    ],
)
def test_bad_translate_flags(flags: list[str], message: str, ckpt: Path) -> None:
    fails_with(["translate", ckpt, "-i", FIXTURES / "test.de", *flags], message)


def test_bad_tokenize_flags(tmp_path: Path) -> None:
    fails_with(
        ["tokenize", "train", tmp_path / "none.txt", "--prefix", tmp_path / "p"], "does not exist"
    )
    fails_with(["tokenize", "encode", "--model", tmp_path / "none.model"], "does not exist")


def test_checkpoint_round_trip_still_loads(ckpt: Path) -> None:
    """Sanity check for the fixture used above: the good checkpoint translates."""
    result = runner.invoke(app, ["translate", str(ckpt), "-i", str(FIXTURES / "test.de")])
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 60
    assert torch.get_num_threads() >= 1
