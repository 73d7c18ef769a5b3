"""nmt.inference.files: run_translate (N lines in, N out; atomic output; n-best lines) and
evaluate_files, through the library API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sacrebleu
import torch

from nmt.errors import UsageError
from nmt.inference.files import evaluate_files, nbest_line, run_translate
from nmt.inference.load import TranslateOptions
from nmt.inference.search import Hypothesis
from nmt.textio import CorpusError
from tests import trained_tiny

NBEST = re.compile(
    r"^(\d+) \|\|\| (.*) \|\|\| LogProb= (-?\d+\.\d{4}) Length= (\d+) \|\|\| (-?\d+\.\d{4})$"
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest on a busy machine


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_tiny.trained_checkpoint(tmp_path_factory.mktemp("files"))


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_n_lines_in_n_lines_out_with_empty_lines(ckpt: Path, tmp_path: Path) -> None:
    src = trained_tiny.sources()[:4]
    ref = trained_tiny.references()[:4]
    lines = ["", src[0], src[1], "", "   ", src[2], src[3], ""]
    inp, out = _write(tmp_path / "in.de", lines), tmp_path / "out.en"
    run_translate(ckpt, inp, out, TranslateOptions(beam=1))
    got = out.read_text(encoding="utf-8").split("\n")
    assert got[-1] == "" and len(got) - 1 == len(lines)  # every line ends with a newline
    got = got[:-1]
    assert [got[i] for i in (1, 2, 5, 6)] == ref
    assert [got[i].strip() for i in (0, 3, 4, 7)] == ["", "", "", ""]
    assert not (tmp_path / "out.en.part").exists()


def test_a_failed_translation_leaves_the_old_output_and_no_part(ckpt: Path, tmp_path: Path) -> None:
    inp = tmp_path / "bad.de"
    good = "".join(s + "\n" for s in trained_tiny.sources()[:3]).encode()
    inp.write_bytes(good + b"ein \xff Hund\n")  # invalid UTF-8 on line 4
    out = _write(tmp_path / "out.en", ["the old output"])
    with pytest.raises(CorpusError):
        run_translate(ckpt, inp, out, TranslateOptions(beam=1))
    assert out.read_text(encoding="utf-8") == "the old output\n"
    assert not (tmp_path / "out.en.part").exists()
    # with errors="replace" the same file translates, one line per line
    run_translate(ckpt, inp, out, TranslateOptions(beam=1), errors="replace")
    assert len(out.read_text(encoding="utf-8").splitlines()) == 4


def test_bad_errors_value_is_refused_before_anything_is_written(ckpt: Path, tmp_path: Path) -> None:
    inp, out = _write(tmp_path / "in.de", ["ein Hund"]), tmp_path / "out.en"
    with pytest.raises(UsageError, match="--errors"):
        run_translate(ckpt, inp, out, TranslateOptions(beam=1), errors="ignore")
    assert not out.exists() and not (tmp_path / "out.en.part").exists()


def test_nbest_lines(ckpt: Path, tmp_path: Path) -> None:
    src = trained_tiny.sources()[:3]
    inp, out = _write(tmp_path / "in.de", src), tmp_path / "out.en"
    run_translate(ckpt, inp, out, TranslateOptions(beam=3, nbest=3))
    rows = out.read_text(encoding="utf-8").splitlines()
    assert len(rows) == 9
    parsed = [NBEST.match(r) for r in rows]
    assert all(parsed), rows
    assert [int(m.group(1)) for m in parsed] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for i in range(3):
        group = parsed[3 * i : 3 * i + 3]
        scores = [float(m.group(5)) for m in group]
        assert scores == sorted(scores, reverse=True)  # best first
        assert group[0].group(2) == trained_tiny.references()[i]
        assert len({m.group(2) for m in group}) == 3  # distinct hypotheses
        assert all(float(m.group(3)) <= 0 and int(m.group(4)) >= 1 for m in group)


def test_nbest_line_format() -> None:
    hyp = Hypothesis(tokens=[5, 6, 7], score=-1.23456, log_prob=-2.5)
    assert nbest_line(4, "a dog", hyp) == "4 ||| a dog ||| LogProb= -2.5000 Length= 4 ||| -1.2346"


def test_evaluate_files_hyp_mode_equals_sacrebleu(tmp_path: Path) -> None:
    hyps = ["a dog runs .", "two men sit on a bench", "the cat"]
    refs = ["a dog runs .", "two men are sitting on a bench", "a cat sleeps"]
    h, r = _write(tmp_path / "h", hyps), _write(tmp_path / "r", refs)
    result = evaluate_files([], h, r, None)
    assert result["n"] == 3
    assert result["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert result["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)


def test_evaluate_files_model_mode_translates_the_source(ckpt: Path, tmp_path: Path) -> None:
    src = _write(tmp_path / "s.de", trained_tiny.sources()[:5])
    ref = _write(tmp_path / "r.en", trained_tiny.references()[:5])
    result = evaluate_files([ckpt], None, ref, src, TranslateOptions(beam=1))
    assert result["n"] == 5 and result["bleu"] == pytest.approx(100.0)


def test_evaluate_files_argument_errors(ckpt: Path, tmp_path: Path) -> None:
    h = _write(tmp_path / "h", ["a"])
    r = _write(tmp_path / "r", ["a", "b"])
    with pytest.raises(UsageError, match="--ref is required"):
        evaluate_files([], h, None, None)
    with pytest.raises(UsageError, match="either --hyp"):
        evaluate_files([ckpt], h, r, h)  # both modes at once
    with pytest.raises(UsageError, match="either --hyp"):
        evaluate_files([], None, r, None)  # neither
    with pytest.raises(CorpusError, match="must align"):
        evaluate_files([], h, r, None)
    with pytest.raises(CorpusError, match="must align"):  # refused before translating
        evaluate_files([tmp_path / "no-such-model"], None, r, h)
