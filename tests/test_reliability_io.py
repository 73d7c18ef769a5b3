# ruff: noqa: F811 (the fixtures imported from tests.test_reliability are parameters here)
"""Issue 26, continued: what one input line may cost, interrupted output files, data that
leaves no batch, broken pipes, and what train.log holds."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nmt.cli.app import app
from nmt.textio import MAX_LINE_BYTES, iter_lines
from tests.test_reliability import (  # noqa: F401 (fixtures)
    SETS,
    TINY,
    checkpoint,
    one_error_line,
    pair_steps,
    run2,
    runner,
    train,
)

MEASURE = (
    "import atexit, resource, sys\n"
    "atexit.register(lambda: print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF)"
    ".ru_maxrss, file=sys.stderr))\n"
    "sys.argv[0] = 'nmt'\n"
    "from nmt.cli.main import main\n"
    "main()\n"
)


def nmt(*args: str, **kwargs) -> subprocess.CompletedProcess:
    cwd = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-c", MEASURE, *args]
    kwargs.setdefault("timeout", 300)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, **kwargs)


def peak_mib(result: subprocess.CompletedProcess) -> float:
    line = next(ln for ln in result.stderr.splitlines() if ln.startswith("MAXRSS"))
    return int(line.split()[1]) / 1024


# --- 10: one line costs bounded memory, however long ------------------------------------------


def test_an_endless_line_is_cut_while_read(tmp_path) -> None:
    path = tmp_path / "nul.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        block = b"\0" * (1 << 20)
        for _ in range(64):
            f.write(block)
        f.write(b"\nnext\n")
    lines = list(iter_lines(path))
    assert len(lines) == 2 and lines[1] == "next"
    assert len(lines[0].encode()) <= MAX_LINE_BYTES


def test_a_cut_line_keeps_whole_characters(tmp_path) -> None:
    path = tmp_path / "long.txt"
    path.write_bytes(b"a" + "é".encode() * MAX_LINE_BYTES + b"\nb\n")
    assert [len(x) for x in iter_lines(path)][1:] == [1]


def test_translating_a_huge_line_has_bounded_memory(checkpoint, tmp_path) -> None:
    small, huge = tmp_path / "small.de", tmp_path / "huge.de"
    small.write_text("ein hund läuft\n")
    huge.write_text("ein hund läuft " * 2_000_000)  # 30 MB, no newline
    base = nmt("translate", str(checkpoint), "-i", str(small), "--device", "cpu", "--beam", "1")
    assert base.returncode == 0, base.stderr
    # Greedy: the test is about memory, and beam 5 over the 1 MiB that is kept (in pieces
    # the model takes) is minutes of CPU, 4-10 minutes of wall time on a loaded 2-core box.
    args = ("translate", str(checkpoint), "--device", "cpu", "--beam", "1")
    result = nmt(*args, "-i", str(huge), timeout=1200)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1  # cut while read, then split into sentences
    assert peak_mib(result) < peak_mib(base) + 300, (peak_mib(base), peak_mib(result))


def test_sigterm_leaves_no_part_file(checkpoint, tmp_path) -> None:
    out = tmp_path / "out.en"
    cmd = [sys.executable, "-m", "nmt", "translate", str(checkpoint), "-o", str(out)]
    cwd = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=os.environ.copy()
    )
    try:
        deadline = time.monotonic() + 120
        while not out.with_name("out.en.part").exists():  # reading stdin, output open
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
    finally:
        proc.kill()
        proc.wait()
    assert not out.with_name("out.en.part").exists() and not out.exists()


# --- 4: a full disk while checkpointing -------------------------------------------------------


def test_the_free_space_check_counts_the_embedded_tokenizer(tmp_path, monkeypatch) -> None:
    import shutil

    import pytest

    from nmt.artifacts.checkpoint import CheckpointError, check_run_dir

    weights_only = 4 * 1000 * (3 + 2)
    usage = shutil.disk_usage(tmp_path)._replace(free=weights_only + 1)
    monkeypatch.setattr("nmt.artifacts.checkpoint.shutil.disk_usage", lambda p: usage)
    with pytest.raises(CheckpointError, match="free"):
        check_run_dir(tmp_path, 1000, 3, tokenizer_bytes=250_000)


def test_a_failing_state_write_is_one_line_and_keeps_the_pair(run2, monkeypatch) -> None:
    def full(*args, **kwargs):
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr("nmt.artifacts.checkpoint.torch.save", full)
    line = one_error_line(train(run2, 3, resume=True), status=1)
    assert "cannot write" in line and "intact" in line
    monkeypatch.undo()
    assert pair_steps(run2) == (2, 2)
    assert train(run2, 3, resume=True).exit_code == 0


def test_a_file_size_limit_while_checkpointing_is_one_line(run2) -> None:
    import resource

    limit = 300_000  # below a checkpoint: the weights cannot be written

    def ulimit_f() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    args = [a for s in SETS + ["train.max_steps=3"] for a in ("--set", s)]
    cmd = [sys.executable, "-m", "nmt", "train", "--resume", str(run2), *args]
    cwd = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        cmd, capture_output=True, text=True, cwd=cwd, timeout=300, preexec_fn=ulimit_f
    )
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert result.returncode == 1 and len(errors) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert pair_steps(run2) == (2, 2)
    assert train(run2, 3, resume=True).exit_code == 0


# --- 11: data that leaves no batch, broken pipes, output paths --------------------------------


def test_a_corpus_of_blank_lines_is_a_usage_error(tmp_path) -> None:
    import shutil

    from tests.conftest import FIXTURES

    data = tmp_path / "data"
    data.mkdir()
    for name in ("val.de", "val.en", "test.de", "test.en"):
        shutil.copy(FIXTURES / name, data / name)
    for name in ("train.de", "train.en"):
        (data / name).write_text("\n  \n\n" * 50)
    sets = [s for s in SETS if not s.startswith("data.dir=")] + [f"data.dir={data}"]
    args = ["train", str(TINY), "--out", str(tmp_path / "run")]
    result = runner.invoke(app, args + [a for s in sets for a in ("--set", s)])
    assert "no training pair is left" in one_error_line(result)


def test_max_len_that_drops_every_pair_is_a_usage_error(tmp_path) -> None:
    result = train(tmp_path / "run", 2, "--set", "data.max_len=1")
    assert "no training pair is left" in one_error_line(result)


def test_help_into_a_closed_pipe_is_quiet() -> None:
    cwd = Path(__file__).resolve().parents[1]
    cmd = f"{sys.executable} -m nmt --help | head -1 >/dev/null; echo ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=cwd)
    assert done.stdout.strip() in ("0", "141") and not done.stderr, done


def test_average_into_a_folder_says_o_must_be_a_file(run2) -> None:
    result = runner.invoke(app, ["average", str(run2 / "last.safetensors"), "-o", str(run2)])
    assert "must name the checkpoint file" in one_error_line(result)


# --- 12: train.log gets every line from info up; the loss window survives a resume -------------


def test_train_log_holds_data_model_validation_and_resume_lines(run2) -> None:
    log = (run2 / "train.log").read_text()
    for text in ("training pairs", "model transformer", "valid step 2:", "training stopped"):
        assert text in log, (text, log)
    assert train(run2, 3, resume=True).exit_code == 0
    assert "resumed at step 2" in (run2 / "train.log").read_text()


def test_the_first_loss_after_a_resume_averages_a_whole_window(tmp_path) -> None:
    import json

    from nmt.training import train_from_config

    sets = [s for s in SETS if s.split("=")[0] not in ("train.log_every", "train.valid_every")]
    sets += ["train.log_every=3", "train.valid_every=100"]
    train_from_config(TINY, sets + ["train.max_steps=6"], tmp_path / "straight")
    train_from_config(TINY, sets + ["train.max_steps=4"], tmp_path / "split")  # saved at 4
    train_from_config(None, ["train.max_steps=6"], None, resume=tmp_path / "split")

    def losses(run: Path) -> dict[int, float]:
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["loss"] for r in records if "loss" in r}

    straight, split = losses(tmp_path / "straight"), losses(tmp_path / "split")
    assert sorted(split) == [3, 6]
    assert abs(straight[6] - split[6]) <= 1e-6, (straight, split)


def test_two_trainings_into_one_out_at_once(tmp_path) -> None:
    """``nmt train ... --out dual --set train.seed=1`` and seed=2 started together: one
    trains, the other is refused with one error line (before: both trained, interleaved)."""
    run = tmp_path / "dual"
    args = [a for s in SETS + ["train.max_steps=100000"] for a in ("--set", s)]
    cmd = [sys.executable, "-m", "nmt", "train", str(TINY), "--out", str(run), *args]
    cwd = Path(__file__).resolve().parents[1]
    procs = [
        subprocess.Popen(
            [*cmd, "--set", f"train.seed={seed}"],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    try:
        deadline = time.monotonic() + 180
        while all(p.poll() is None for p in procs):
            assert time.monotonic() < deadline, "neither training was refused"
            time.sleep(0.2)
        refused = next(p for p in procs if p.poll() is not None)
        other = next(p for p in procs if p is not refused)
        errors = [ln for ln in refused.stderr.read().splitlines() if ln.startswith("error:")]
        assert refused.returncode == 2 and len(errors) == 1, errors
        assert "in use by another training" in errors[0] or "already holds a run" in errors[0]
        assert other.poll() is None  # the other one trains on
        other.send_signal(signal.SIGTERM)
        assert other.wait(timeout=120) == 143
    finally:
        for p in procs:
            p.kill()
            p.wait()
