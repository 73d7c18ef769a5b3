"""Unix manners: exit statuses, quiet broken pipes, ``-`` for stdin/stdout, n-best lines,
``--version``, ``--quiet`` and ``--log-level``, ``nmt evaluate`` with translate's options."""

from __future__ import annotations

import errno
import gzip
import json
import logging
import os
import re
import signal
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import save_checkpoint
from nmt.cli.app import app
from nmt.errors import Interrupted, RuntimeFailure, UsageError, exit_code
from nmt.inference.search import length_penalty
from tests.conftest import FIXTURES, REPO, tiny_config, tiny_model

runner = CliRunner()
SENTENCES = ["Zwei junge Männer stehen am Strand.", "Ein Hund rennt.", "Eine Frau liest."]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tok) -> Path:
    path = tmp_path_factory.mktemp("manners") / "m.safetensors"
    cfg = tiny_config("transformer", **{"search.max_len_a": "0.5", "search.max_len_b": "3"})
    save_checkpoint(path, tiny_model("transformer", tok), tok, cfg)
    return path


@pytest.fixture()
def src_file(tmp_path: Path) -> Path:
    path = tmp_path / "src.de"
    path.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return path


def nmt_process(*args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "nmt", *args], cwd=REPO, env=env, **popen)


# --- exit statuses -------------------------------------------------------------------------------


def test_exit_status_of_each_kind_of_error() -> None:
    assert exit_code(UsageError("bad flag")) == 2
    assert exit_code(RuntimeFailure("loss is NaN")) == 1
    assert exit_code(OSError(errno.ENOSPC, "No space left on device")) == 1
    assert exit_code(OSError(errno.EIO, "Input/output error")) == 1
    assert exit_code(FileNotFoundError(errno.ENOENT, "No such file", "x")) == 2
    assert exit_code(IsADirectoryError(errno.EISDIR, "Is a directory", "x")) == 2
    assert exit_code(PermissionError(errno.EACCES, "Permission denied", "x")) == 2
    assert exit_code(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")) == 2


def test_runtime_failures_exit_1(ckpt: Path, src_file: Path, tmp_path: Path, monkeypatch) -> None:
    def failing(*args, **kwargs):
        raise RuntimeFailure("the model produced NaN")

    monkeypatch.setattr("nmt.inference.files.run_translate", failing)
    result = runner.invoke(app, ["translate", str(ckpt), "-i", str(src_file)])
    assert result.exit_code == 1 and "error: the model produced NaN" in result.output
    monkeypatch.undo()

    out = tmp_path / "out.en"
    out.write_text("the previous output\n", encoding="utf-8")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out) + ".part")

    monkeypatch.setattr("nmt.inference.files._write_lines", disk_full)
    result = runner.invoke(app, ["translate", str(ckpt), "-i", str(src_file), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert "No space left on device" in result.output and "Traceback" not in result.output
    assert out.read_text(encoding="utf-8") == "the previous output\n"  # never half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.en", "src.de"]


def test_out_of_gpu_memory_is_one_line_and_exits_1(ckpt: Path, src_file: Path, monkeypatch):
    """PyTorch's OOM error is a paragraph with a traceback above it; the user gets its first
    line and what to change."""

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 2.00 GiB.\nOf the allocated memory ..."
        )

    monkeypatch.setattr("nmt.inference.files.run_translate", out_of_memory)
    result = runner.invoke(app, ["translate", str(ckpt), "-i", str(src_file)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: CUDA out of memory.")
    assert "--batch-size" in lines[0] and "Of the allocated" not in result.output


def test_a_safe_stop_by_signal_exits_128_plus_the_signal(ckpt: Path, monkeypatch) -> None:
    """What training raises after writing its checkpoint on SIGTERM: status 143, no 'error:'."""

    def stopped(*args, **kwargs):
        raise Interrupted(signal.SIGTERM, "stopped; go on with: nmt train --resume RUN")

    monkeypatch.setattr("nmt.inference.files.run_translate", stopped)
    result = runner.invoke(app, ["translate", str(ckpt)], input="")
    assert result.exit_code == 143 and exit_code(Interrupted(signal.SIGINT, "")) == 130
    assert "stopped; go on with: nmt train --resume RUN" in result.stderr
    assert "error" not in result.stderr


def test_usage_errors_exit_2(ckpt: Path, tmp_path: Path) -> None:
    for args in (
        ["translate", str(ckpt), "-i", str(tmp_path / "missing.de")],
        ["translate", str(ckpt), "-i", str(tmp_path)],  # a folder
        ["translate", str(ckpt), "--beam", "0"],
        ["average", str(ckpt), "-o", "-"],
    ):
        result = runner.invoke(app, args, input="Ein Hund.\n")
        assert result.exit_code == 2 and "error: " in result.output, (args, result.output)


def test_ctrl_c_exits_130(ckpt: Path) -> None:
    """SIGINT while ``nmt translate`` waits for input: 'interrupted', status 130."""
    proc = nmt_process(
        "translate", str(ckpt), "-i", "-",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in proc.stderr:  # wait until it reads stdin
            if "translating <stdin>" in line:
                break
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)  # stdin stays open: the signal, not an end of input, stops it
        err = proc.stderr.read()
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err


def test_broken_pipe_is_quiet(ckpt: Path, tmp_path: Path) -> None:
    """``nmt translate ... | head -1``: no message, the status of a SIGPIPE death (141).

    Empty lines translate without the model, so the output outgrows the pipe's buffer
    (64 KiB) at once and the writes after ``head`` has gone fail."""
    src = tmp_path / "many.de"
    src.write_text("Ein Hund rennt.\n" + "\n" * 300_000, encoding="utf-8")
    nmt = nmt_process(
        "-q", "translate", str(ckpt), "-i", str(src), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    head = subprocess.Popen(["head", "-1"], stdin=nmt.stdout, stdout=subprocess.PIPE)
    nmt.stdout.close()  # head holds the only read end now
    first, _ = head.communicate(timeout=120)
    err = nmt.stderr.read().decode()
    nmt.wait(timeout=60)
    assert len(first.decode().splitlines()) == 1
    assert err == "" and nmt.returncode == 141


# --- "-" is stdin / stdout -----------------------------------------------------------------------


def test_dash_means_stdin_and_stdout(ckpt: Path, src_file: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    from_file = runner.invoke(app, ["translate", str(ckpt), "-i", str(src_file)])
    assert from_file.exit_code == 0, from_file.output
    text = src_file.read_text(encoding="utf-8")
    piped = runner.invoke(app, ["translate", str(ckpt), "-i", "-", "-o", "-"], input=text)
    assert piped.exit_code == 0, piped.output
    assert piped.stdout == from_file.stdout and len(piped.stdout.splitlines()) == 3
    model = FIXTURES / "spm.tiny.model"
    pieces = runner.invoke(
        app, ["tokenize", "encode", "--model", str(model), "-i", "-", "-o", "-"], input=text
    )
    assert pieces.exit_code == 0 and len(pieces.stdout.splitlines()) == 3
    assert "▁" in pieces.stdout
    back = runner.invoke(
        app, ["tokenize", "decode", "--model", str(model), "-i", "-"], input=pieces.stdout
    )
    assert back.stdout == text
    assert not Path("-").exists()  # "-o -" never writes a file named "-"


def test_evaluate_reads_hypotheses_from_stdin(tmp_path: Path) -> None:
    hyps = (FIXTURES / "val.en").read_text(encoding="utf-8")
    args = ["evaluate", "--ref", str(FIXTURES / "val.en"), "--json"]
    result = runner.invoke(app, [*args, "--hyp", "-"], input=hyps)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["bleu"] == pytest.approx(100.0)
    both = runner.invoke(app, ["evaluate", "--hyp", "-", "--ref", "-"], input=hyps)
    assert both.exit_code == 2 and "only one input can be stdin" in both.output


def test_gzipped_text_is_read_like_plain_text(ckpt: Path, src_file: Path, tmp_path: Path) -> None:
    """Test sets often ship gzipped: translate and evaluate read a .gz file as its text, and
    a damaged one is a one-line usage error."""
    packed = tmp_path / "src.de.gz"
    packed.write_bytes(gzip.compress(src_file.read_bytes()))
    plain = runner.invoke(app, ["translate", str(ckpt), "-i", str(src_file), "--beam", "1"])
    unpacked = runner.invoke(app, ["translate", str(ckpt), "-i", str(packed), "--beam", "1"])
    assert unpacked.exit_code == 0, unpacked.output
    assert unpacked.stdout == plain.stdout and plain.stdout.count("\n") == 3
    ref = tmp_path / "ref.en.gz"
    ref.write_bytes(gzip.compress((FIXTURES / "val.en").read_bytes()))
    args = ["evaluate", "--hyp", str(FIXTURES / "val.en"), "--ref", str(ref), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["bleu"] == pytest.approx(100.0) and scores["n"] == 60
    ref.write_bytes(ref.read_bytes()[:-30])  # truncated download
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "not a valid gzip file" in result.output
    assert "Traceback" not in result.output


# --- n-best lines --------------------------------------------------------------------------------

NBEST = re.compile(r"^(\d+) \|\|\| (.*) \|\|\| ((?:\S+= \S+ ?)+) \|\|\| (-?\d+\.\d+)$")


def parse_nbest(line: str) -> tuple[int, str, dict[str, float], float]:
    """A Moses n-best line: index ||| hypothesis ||| Name= value ... ||| score."""
    match = NBEST.match(line)
    assert match, line
    parts = match.group(3).split()
    features = {name.rstrip("="): float(value) for name, value in zip(parts[::2], parts[1::2])}
    return int(match.group(1)), match.group(2), features, float(match.group(4))


def test_nbest_lines_have_four_fields(ckpt: Path, src_file: Path) -> None:
    args = ["translate", str(ckpt), "-i", str(src_file), "--beam", "3", "--nbest", "3"]
    result = runner.invoke(app, [*args, "--length-penalty", "0.6"])
    assert result.exit_code == 0, result.output
    entries = [parse_nbest(line) for line in result.stdout.splitlines()]
    assert [e[0] for e in entries] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for _, _, features, score in entries:
        assert set(features) == {"LogProb", "Length"}
        expected = features["LogProb"] / length_penalty(int(features["Length"]), 0.6)
        assert score == pytest.approx(expected, abs=2e-4)
    for i in range(3):
        scores = [e[3] for e in entries if e[0] == i]
        assert scores == sorted(scores, reverse=True)
    best = runner.invoke(app, ["translate", str(ckpt), "-i", str(src_file), "--beam", "3"])
    best = best.stdout.splitlines()
    assert [e[1] for e in entries[::3]] == best  # the first of each list is the 1-best


# --- global options ------------------------------------------------------------------------------


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"nmt {version('nmt')}\n"


def test_quiet_and_log_level(ckpt: Path, src_file: Path) -> None:
    args = ["translate", str(ckpt), "-i", str(src_file)]
    loud = runner.invoke(app, args)
    assert loud.exit_code == 0 and "translated 3 lines" in loud.stderr
    for options in (["-q"], ["--log-level", "warning"]):
        result = runner.invoke(app, [*options, *args])
        assert result.exit_code == 0 and result.stderr == "", (options, result.stderr)
        assert result.stdout == loud.stdout
        # the "nmt" logger still passes INFO, for the run's own log file (train.log)
        assert logging.getLogger("nmt").getEffectiveLevel() == logging.INFO
    spm = ["tokenize", "encode", "--model", str(FIXTURES / "spm.tiny.model")]
    debug = runner.invoke(app, ["--log-level", "debug", "--quiet", *spm], input="")
    assert debug.exit_code == 0 and logging.getLogger("nmt").getEffectiveLevel() == logging.DEBUG
    assert runner.invoke(app, ["--log-level", "loud", *spm], input="").exit_code == 2
    assert runner.invoke(app, spm, input="").exit_code == 0  # back to the defaults


# --- nmt evaluate MODEL --src takes translate's options ------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        ["--beam", "2", "--length-penalty", "0.6", "--batch-size", "2", "--quantize", "int8"],
        ["--precision", "bf16", "--device", "cpu"],
    ],
)
def test_evaluate_translates_like_translate(
    ckpt: Path, src_file: Path, tmp_path: Path, options: list[str]
) -> None:
    ref = tmp_path / "ref.en"
    ref.write_text("Two young men on the beach.\nA dog runs.\nA woman reads.\n", encoding="utf-8")
    hyp = tmp_path / "hyp.en"
    models = [str(ckpt), str(ckpt)]  # an ensemble
    made = runner.invoke(app, ["translate", *models, "-i", str(src_file), "-o", str(hyp), *options])
    assert made.exit_code == 0, made.output
    scored = runner.invoke(app, ["evaluate", "--hyp", str(hyp), "--ref", str(ref), "--json"])
    direct = runner.invoke(
        app, ["evaluate", *models, "--src", str(src_file), "--ref", str(ref), "--json", *options]
    )
    assert direct.exit_code == 0, direct.output
    assert json.loads(direct.stdout) == json.loads(scored.stdout)
    for flags, message in [
        (["--beam", "0"], "--beam must be at least 1"),
        (["--precision", "fp8"], "precision must be one of"),
        (["--quantize", "int4"], "--quantize must be one of"),
        (["--quantize", "int8", "--precision", "bf16"], "--quantize int8 runs in fp32"),
    ]:
        result = runner.invoke(
            app, ["evaluate", str(ckpt), "--src", str(src_file), "--ref", str(ref), *flags]
        )
        assert result.exit_code == 2 and message in result.output, result.output


def test_evaluate_refuses_misaligned_sources_before_translating(ckpt, src_file, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("translated although the files do not align")

    monkeypatch.setattr("nmt.inference.files.make_translator", never)
    result = runner.invoke(
        app, ["evaluate", str(ckpt), "--src", str(src_file), "--ref", str(FIXTURES / "val.en")]
    )
    assert result.exit_code == 2 and "has 3 lines but" in result.output, result.output
