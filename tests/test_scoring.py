"""Forced decoding (``nmt score``): the training loss's numbers, pair by pair, in input order."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nmt.artifacts.checkpoint import save_checkpoint
from nmt.cli.app import app
from nmt.data.batch import encode_corpus
from nmt.inference.ensemble import Ensemble
from nmt.inference.scoring import Scorer, format_score
from nmt.textio import read_parallel
from nmt.training.loss import smoothed_cross_entropy
from tests.conftest import BACKBONES, FIXTURES, tiny_config, tiny_model
from tests.reference_batcher import epoch_batches, make_batch

runner = CliRunner()


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    src, tgt = read_parallel(FIXTURES / "val.de", FIXTURES / "val.en")
    return list(zip(src, tgt))


def validation_nll(model, tok, pairs: list[tuple[str, str]]) -> float:
    """The validation loss as training computes it: token-bucketed batches, the fused loss
    with label smoothing 0, summed over target tokens (EOS included), over the token count."""
    corpus = encode_corpus(tok, [s for s, _ in pairs], [t for _, t in pairs])
    total, count = 0.0, 0
    with torch.no_grad():
        for indices in epoch_batches(corpus, 800, 0, 0):
            batch = make_batch(corpus, indices, tok)
            logits = model(batch.src, batch.src_mask, batch.tgt_in)  # (B, T, V)
            total += smoothed_cross_entropy(
                logits.flatten(0, 1), batch.tgt_out.flatten(), tok.pad_id, 0.0
            ).item()
            count += batch.n_tokens
    return total / count


@pytest.mark.parametrize("backbone", BACKBONES)
def test_mean_score_is_the_validation_nll(backbone: str, tok, pairs) -> None:
    model = tiny_model(backbone, tok).eval()
    scores = list(Scorer(model, tok, batch_size=7).score_stream(pairs))
    assert len(scores) == len(pairs)
    tokens = sum(len(s.token_log_probs) for s in scores)
    assert tokens == sum(len(t) + 1 for t in tok.encode_tgt([t for _, t in pairs]))
    mean_nll = -sum(s.total for s in scores) / tokens
    assert mean_nll == pytest.approx(validation_nll(model, tok, pairs), rel=1e-5)
    for s in scores:
        assert s.mean == pytest.approx(s.total / len(s.token_log_probs))
        assert all(lp <= 0 for lp in s.token_log_probs)


def test_ensemble_of_a_model_with_itself_scores_as_the_model(tok, pairs) -> None:
    model = tiny_model("attention", tok).eval()
    alone = Scorer(model, tok).score_chunk(pairs[:20])
    pair = Scorer(Ensemble([model, model]).eval(), tok).score_chunk(pairs[:20])
    for a, b in zip(alone, pair):
        assert b.token_log_probs == pytest.approx(a.token_log_probs, abs=1e-5)


def test_batching_and_chunks_keep_each_pairs_score(tok, pairs) -> None:
    """Sorting, padding and chunking change nothing: every pair scores as on its own."""
    model = tiny_model("transformer", tok).eval()
    chunked = Scorer(model, tok, batch_size=4, chunk_pairs=7)
    rotated = pairs[13:] + pairs[:13]
    together = list(chunked.score_stream(rotated))
    for i in (0, 5, 20, 46, 59):
        alone = Scorer(model, tok, batch_size=1).score_chunk([rotated[i]])[0]
        assert together[i].token_log_probs == pytest.approx(alone.token_log_probs, abs=1e-5)
    empty = Scorer(model, tok).score_chunk([("", ""), ("Ein Hund.", "")])
    assert [len(s.token_log_probs) for s in empty] == [1, 1]  # only EOS


def test_format_score() -> None:
    from nmt.inference.scoring import PairScore

    score = PairScore([-1.0, -0.5, -1.5])
    assert format_score(score) == "-3.0000\t-1.0000"
    assert format_score(score, per_token=True) == "-3.0000\t-1.0000\t-1.0000 -0.5000 -1.5000"


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tok) -> Path:
    path = tmp_path_factory.mktemp("score") / "m.safetensors"
    save_checkpoint(path, tiny_model("lstm", tok), tok, tiny_config("lstm"))
    return path


def _lines(path: Path, n: int) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()[:n]


def test_cli_files_and_tsv_on_stdin_agree(ckpt: Path, tmp_path: Path, tok) -> None:
    src, tgt = _lines(FIXTURES / "test.de", 9), _lines(FIXTURES / "test.en", 9)
    (tmp_path / "s").write_text("\n".join(src) + "\n", encoding="utf-8")
    (tmp_path / "t").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    args = ["score", str(ckpt), "--per-token", "--batch-size", "4"]
    files = runner.invoke(app, [*args, "--src", str(tmp_path / "s"), "--tgt", str(tmp_path / "t")])
    assert files.exit_code == 0, files.output
    tsv = "".join(f"{s}\t{t}\n" for s, t in zip(src, tgt))
    piped = runner.invoke(app, args, input=tsv)
    assert piped.exit_code == 0, piped.output
    assert piped.stdout == files.stdout
    rows = [line.split("\t") for line in files.stdout.splitlines()]
    assert len(rows) == 9
    for row, ids in zip(rows, tok.encode_tgt(tgt)):
        per_token = [float(x) for x in row[2].split()]
        assert len(per_token) == len(ids) + 1  # EOS included
        assert float(row[0]) == pytest.approx(sum(per_token), abs=1e-3)
        assert float(row[1]) == pytest.approx(float(row[0]) / len(per_token), abs=1e-4)
    out = tmp_path / "scores.tsv"
    result = runner.invoke(app, ["score", str(ckpt), "-o", str(out), "-i", "-"], input=tsv)
    assert result.exit_code == 0 and out.read_text(encoding="utf-8").splitlines() == [
        "\t".join(row[:2]) for row in rows
    ]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--src", FIXTURES / "val.de", "--tgt", FIXTURES / "train.en"], "", "has 60 lines but"),
        (["--src", FIXTURES / "val.de"], "", "give --src and --tgt together"),
        ([], "Ein Hund.\tA dog.\nkein Tab\n", "<stdin>, line 2: expected source<TAB>target"),
        (["--src", "-", "--tgt", "-"], "", "only one input can be stdin"),
    ],
)
def test_cli_refuses_pairs_that_do_not_align(ckpt: Path, args: list, stdin: str, message) -> None:
    result = runner.invoke(app, ["score", str(ckpt), *map(str, args)], input=stdin)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
