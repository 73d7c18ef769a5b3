"""``nmt translate --resume``: a translation killed at any moment continues where its
output was safely written, and the finished file is byte-identical to an uninterrupted run."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import save_checkpoint
from nmt.cli.app import app
from nmt.inference.glossary import words_of
from nmt.inference.load import TranslateOptions
from nmt.inference.resume import run_resumable
from nmt.inference.translator import Translator
from tests.conftest import FIXTURES, REPO, tiny_config, tiny_model

LINE = st.text(
    st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=30
)


@pytest.fixture(scope="module")
def model(tmp_path_factory, tok) -> Path:
    """A tiny untrained Transformer with short outputs (fast, and full of near-ties)."""
    cfg = tiny_config(
        "transformer", **{"search.max_len_a": "0", "search.max_len_b": "4", "search.beam": "1"}
    )
    path = tmp_path_factory.mktemp("resume") / "tiny.safetensors"
    save_checkpoint(path, tiny_model("transformer", tok).eval(), tok, cfg)
    return path


def short_lines(n: int, seed: int = 0) -> list[str]:
    """``n`` lines of one to six words of the fixture corpus, every tenth one empty."""
    words = (FIXTURES / "train.de").read_text(encoding="utf-8").split()
    rng = random.Random(seed)
    return [
        "" if i % 10 == 9 else " ".join(rng.choices(words, k=rng.randint(1, 6))) for i in range(n)
    ]


def _cmd(model: Path, src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "nmt", "translate", str(model), "-i", str(src), "-o", str(out)]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "NMT_DEBUG": ""}


def _progress_lines(progress: Path) -> int:
    try:
        return json.loads(progress.read_text())["lines"]
    except (OSError, ValueError):
        return 0


PREFIXES = ["A man", "", "Two dogs", "", "The woman", "Some", ""]  # line n: PREFIXES[n % 7]


def guidance_files(directory: Path, lines: list[str]) -> list[str]:
    """A glossary of frequent fixture words, and a prefix file that cycles through
    :data:`PREFIXES` (a prefix file out of step with the input by a chunk shows): the
    flags that use them, with both columns."""
    glossary, prefixes = directory / "terms.tsv", directory / "prefixes.en"
    glossary.write_text("Mann\tguy\nFrau\tlady\nHund\tred dog\n", encoding="utf-8")
    prefixes.write_text(
        "".join(PREFIXES[n % 7] + "\n" for n in range(len(lines))), encoding="utf-8"
    )
    return ["--glossary", str(glossary), "--prefix", str(prefixes), "--scores", "--alignments"]


@pytest.mark.parametrize("guided", [False, True])
def test_kill_9_at_random_moments_then_resume_gives_the_same_bytes(
    model: Path, tmp_path: Path, guided: bool
):
    lines = short_lines(3000)
    src = tmp_path / "in.de"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    flags = ["--chunk-lines", "100"] + (guidance_files(tmp_path, lines) if guided else [])
    reference = tmp_path / "reference.en"
    subprocess.run(_cmd(model, src, reference) + flags, env=_env(), check=True, cwd=REPO)
    out = tmp_path / "out.en"
    progress = tmp_path / "out.en.part.progress"
    rng = random.Random(1)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(
            _cmd(model, src, out) + flags + ["--resume"],
            env=_env(),
            cwd=REPO,
            stderr=subprocess.DEVNULL,
        )
        before, deadline = _progress_lines(progress), time.monotonic() + 120
        while _progress_lines(progress) <= before and proc.poll() is None:
            assert time.monotonic() < deadline, "no progress in 120 s"
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.4))  # anywhere: mid-chunk, mid-write, mid-record
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert not out.exists() or proc.returncode == 0
    assert kills >= 2, "the runs finished before they could be killed: use a longer input"
    subprocess.run(_cmd(model, src, out) + flags + ["--resume"], env=_env(), check=True, cwd=REPO)
    assert out.read_bytes() == reference.read_bytes()
    assert not progress.exists() and not (tmp_path / "out.en.part").exists()
    if guided:  # the columns are there, and each prefix started its own line's output
        rows = [row.split("\t") for row in out.read_text(encoding="utf-8").splitlines()]
        assert len(rows) == len(lines) and all(len(row) == 4 for row in rows)
        for n, (line, row) in enumerate(zip(lines, rows)):
            assert row[0].startswith(PREFIXES[n % 7]) if line else row[0] == ""
            assert "guy" in words_of(row[0]) or "Mann" not in words_of(line)


def _interrupt_after(monkeypatch, chunks: int) -> None:
    """Make the ``chunks + 1``-th chunk raise KeyboardInterrupt (a Ctrl-C mid-file)."""
    real = Translator.translate_chunk
    calls = {"n": 0}

    def translate_chunk(self, lines, *guides):
        calls["n"] += 1
        if calls["n"] > chunks:
            raise KeyboardInterrupt
        return real(self, lines, *guides)

    monkeypatch.setattr(Translator, "translate_chunk", translate_chunk)


def _plain_then_interrupted(args: list[str], out: Path, plain: Path, monkeypatch, chunks: int):
    """Translate ``args`` uninterrupted into ``plain``, then into ``out`` with --resume,
    interrupted after ``chunks`` chunks; the interrupted run's result."""
    whole = CliRunner().invoke(app, [*args, "-o", str(plain)])
    assert whole.exit_code == 0, whole.output
    with monkeypatch.context() as m:
        _interrupt_after(m, chunks)
        return CliRunner().invoke(app, [*args, "-o", str(out), "--resume"])


def test_interrupted_says_how_to_continue_and_refuses_another_input(
    model: Path, tmp_path: Path, monkeypatch, tok
) -> None:
    src, out = tmp_path / "in.de", tmp_path / "out.en"
    lines = short_lines(50, seed=2)
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = ["translate", str(model), "-i", str(src), "-o", str(out), "--chunk-lines", "7"]
    plain = CliRunner().invoke(app, [*args[:5], str(tmp_path / "plain.en"), *args[6:]])
    assert plain.exit_code == 0, plain.output

    with monkeypatch.context() as m:
        _interrupt_after(m, 3)
        stopped = CliRunner().invoke(app, [*args, "--resume"])
    assert stopped.exit_code == 130
    assert "holds 21 of 50 lines" in stopped.output and "--resume" in stopped.output
    assert not out.exists()
    assert (tmp_path / "out.en.part").read_text(encoding="utf-8").count("\n") == 21

    src.write_text("\n".join(lines[:-1] + ["anders"]) + "\n", encoding="utf-8")
    refused = CliRunner().invoke(app, [*args, "--resume"])
    assert refused.exit_code == 2
    assert "started with a different input file" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    changed = CliRunner().invoke(app, [*args[:-1], "8", "--resume"])  # other chunks
    assert changed.exit_code == 2 and "started with different options" in changed.output
    other = tmp_path / "other.safetensors"
    save_checkpoint(other, tiny_model("transformer", tok, seed=1), tok, tiny_config("transformer"))
    swapped = CliRunner().invoke(app, [args[0], str(other), *args[2:], "--resume"])
    assert swapped.exit_code == 2 and "started with a different model" in swapped.output
    resumed = CliRunner().invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert out.read_bytes() == (tmp_path / "plain.en").read_bytes()


def test_guided_markup_and_split_lines_resume_identically(
    model: Path, tmp_path: Path, monkeypatch
) -> None:
    """Glossary, prefixes and both columns over markup and split sentences: an
    interrupted run continues to the bytes of an uninterrupted one; another glossary is
    another translation, refused."""
    lines = short_lines(40, seed=4)
    lines = [f"<b>{x}</b>. {x} <br/>" if x and n % 2 else x for n, x in enumerate(lines)]
    src, out = tmp_path / "in.de", tmp_path / "out.en"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = ["translate", str(model), "-i", str(src), "--chunk-lines", "6", "--markup", "xml"]
    args += ["--split-sentences", "on", *guidance_files(tmp_path, lines)]
    stopped = _plain_then_interrupted(args, out, tmp_path / "plain.en", monkeypatch, 2)
    assert stopped.exit_code == 130 and "holds 12 of 40" in stopped.output
    glossary = tmp_path / "terms.tsv"
    terms = glossary.read_text(encoding="utf-8")
    glossary.write_text(terms + "Junge\tboy\n", encoding="utf-8")
    refused = CliRunner().invoke(app, [*args, "-o", str(out), "--resume"])
    assert refused.exit_code == 2 and "started with different options" in refused.output
    glossary.write_text(terms, encoding="utf-8")
    resumed = CliRunner().invoke(app, [*args, "-o", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert out.read_bytes() == (tmp_path / "plain.en").read_bytes()
    rows = [row.split("\t") for row in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 40 and all(len(row) == 4 for row in rows)


@pytest.mark.parametrize("gz, guided", [(False, False), (True, False), (False, True)])
def test_nbest_lists_and_gzip_input_resume_identically(
    model: Path, tmp_path: Path, monkeypatch, gz: bool, guided: bool
) -> None:
    """n-best lines number the input lines of the whole file, across the resumption (and
    with guidance, take the prefixes of their own lines)."""
    lines = short_lines(30, seed=3)
    text = ("\n".join(lines) + "\n").encode()
    src = tmp_path / ("in.de.gz" if gz else "in.de")
    src.write_bytes(gzip.compress(text) if gz else text)
    out = tmp_path / "out.en"
    args = ["translate", str(model), "-i", str(src), "--beam", "2", "--nbest", "2"]
    args += ["--chunk-lines", "4"] + (guidance_files(tmp_path, lines) if guided else [])
    stopped = _plain_then_interrupted(args, out, tmp_path / "plain.en", monkeypatch, 2)
    assert stopped.exit_code == 130 and "holds 8" in stopped.output
    resumed = CliRunner().invoke(app, [*args, "-o", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert out.read_bytes() == (tmp_path / "plain.en").read_bytes()
    assert out.read_text(encoding="utf-8").splitlines()[-1].startswith("29 ||| ")
    if guided:
        for entry in out.read_text(encoding="utf-8").splitlines():
            n, text, *_ = entry.split(" ||| ")
            assert text.startswith(PREFIXES[int(n) % 7]) if lines[int(n)] else text == ""


def test_without_resume_a_leftover_part_is_overwritten(model: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "in.de", tmp_path / "out.en"
    src.write_text("\n".join(short_lines(20)) + "\n", encoding="utf-8")
    (tmp_path / "out.en.part").write_text("stale\n" * 100, encoding="utf-8")
    result = CliRunner().invoke(app, ["translate", str(model), "-i", str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").count("\n") == 20
    assert "stale" not in out.read_text(encoding="utf-8")


def test_without_resume_an_interruption_says_resume_would_keep_it(
    model: Path, tmp_path: Path, monkeypatch
) -> None:
    src, out = tmp_path / "in.de", tmp_path / "out.en"
    src.write_text("\n".join(short_lines(20)) + "\n", encoding="utf-8")
    _interrupt_after(monkeypatch, 1)
    args = ["translate", str(model), "-i", str(src), "-o", str(out), "--chunk-lines", "5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130
    assert "--resume" in result.output and "error" not in result.output
    assert list(tmp_path.iterdir()) == [src]  # no OUT, no OUT.part


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--sample", "topk:5"], "cannot continue --sample"),
        (["-o", "-"], "needs files"),
        (["--chunk-lines", "0"], "--chunk-lines must be at least 1"),
    ],
)
def test_bad_resume_combinations_are_one_line_errors(model, tmp_path, extra, message) -> None:
    src = tmp_path / "in.de"
    src.write_text("ein Hund\n", encoding="utf-8")
    args = ["translate", str(model), "-i", str(src), "-o", str(tmp_path / "o.en"), "--resume"]
    result = CliRunner().invoke(app, [*args, *extra])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(st.one_of(st.just(""), LINE), max_size=30),
    chunk=st.integers(1, 8),
    stop=st.integers(0, 5),
)
def test_n_lines_in_n_lines_out_across_an_interruption(
    model: Path, tmp_path_factory, lines: list[str], chunk: int, stop: int
) -> None:
    work = tmp_path_factory.mktemp("lines")
    src, out = work / "in.txt", work / "out.txt"
    src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    options = TranslateOptions(chunk_lines=chunk)
    with pytest.MonkeyPatch.context() as m:
        _interrupt_after(m, stop)
        try:
            run_resumable(model, src, out, options)
        except Exception as e:  # Interrupted, when the file has more than `stop` chunks
            assert "--resume" in str(e)
    if not out.exists():
        run_resumable(model, src, out, options)
    text = out.read_text(encoding="utf-8")
    assert text.count("\n") == len(lines) and (not text or text.endswith("\n"))
    for line, got in zip(lines, text.split("\n")):
        if not line.strip():
            assert got == ""
