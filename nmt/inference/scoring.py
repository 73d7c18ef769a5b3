"""Forced decoding: the log-probability a model gives a known target (``nmt score``).

Each (source, target) pair goes through the teacher-forced forward pass that training and
validation use: the decoder reads BOS + target and is scored on target + EOS, so a pair's
total is ``log p(target, EOS | source)`` and its mean the total divided by the number of
target tokens (EOS included). Over a corpus, minus the token-weighted mean is exactly the
validation loss (label smoothing 0). Uses: reranking n-best lists and filtering a corpus by
how probable the model finds each pair (fairseq's ``--score-reference``, ``marian-scorer``).

Pairs are scored in length-sorted batches, a chunk at a time, and written back in input
order: one output line per pair, in constant memory whatever the corpus size. Only the
backbone contract's ``forward`` is used, so ensembles (:class:`nmt.inference.ensemble.Ensemble`,
whose forward is the mixture) score like single models.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from nmt.data.batch import collate
from nmt.errors import UsageError
from nmt.inference.load import TranslateOptions, load_for_inference
from nmt.languages import choose_target
from nmt.models.base import Seq2Seq, log_softmax_fp32
from nmt.precision import autocast
from nmt.textio import (
    CorpusError,
    count_lines,
    display_name,
    is_stdio,
    iter_lines,
    one_stdin,
    open_output,
    strip_cr,
)
from nmt.tokenizer import Tokenizer

log = logging.getLogger("nmt.inference.scoring")


@dataclass
class PairScore:
    token_log_probs: list[float]  # log p of every target token, EOS included

    @property
    def total(self) -> float:
        return sum(self.token_log_probs)

    @property
    def mean(self) -> float:
        return self.total / len(self.token_log_probs)


@dataclass
class Scorer:
    """A model and its tokenizer: turns (source, target) pairs into :class:`PairScore`\\ s."""

    model: Seq2Seq
    tok: Tokenizer
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast, as in translation)
    batch_size: int = 64  # pairs per forward pass
    chunk_pairs: int = 10_000  # pairs read, sorted and scored at a time

    def score_batch(self, src: list[list[int]], tgt: list[list[int]]) -> list[PairScore]:
        """Scores of encoded pairs (sources with EOS, targets without BOS/EOS), one pass."""
        batch = collate(src, tgt, self.tok).to(self.device)
        self.model.eval()
        with torch.inference_mode(), autocast(self.precision, self.device):
            logits = self.model(batch.src, batch.src_mask, batch.tgt_in)  # (B, T, V)
        log_probs = log_softmax_fp32(logits)  # (B, T, V)
        picked = log_probs.gather(2, batch.tgt_out.unsqueeze(-1)).squeeze(-1)  # (B, T)
        return [PairScore(picked[i, : len(t) + 1].tolist()) for i, t in enumerate(tgt)]

    def score_chunk(self, pairs: list[tuple[str, str]], first: int = 1) -> list[PairScore]:
        """Sort by length, score in batches, restore the input order (``first``: the
        number of the first pair, for errors)."""
        src = self.tok.encode_src([s for s, _ in pairs])
        tgt = self.tok.encode_tgt([t for _, t in pairs])
        self._check_lengths(src, tgt, first)
        order = sorted(range(len(pairs)), key=lambda i: (len(src[i]), len(tgt[i])))
        results: list[PairScore | None] = [None] * len(pairs)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            scored = self.score_batch([src[i] for i in idx], [tgt[i] for i in idx])
            for i, s in zip(idx, scored):
                results[i] = s
        return results  # type: ignore[return-value]  (every slot is filled)

    def score_stream(self, pairs: Iterable[tuple[str, str]]) -> Iterator[PairScore]:
        """Scores of every pair, in order, ``chunk_pairs`` at a time."""
        it, first = iter(pairs), 1
        while chunk := list(itertools.islice(it, self.chunk_pairs)):
            yield from self.score_chunk(chunk, first)
            first += len(chunk)

    def _check_lengths(self, src: list[list[int]], tgt: list[list[int]], first: int) -> None:
        """A pair longer than the model's positions cannot be scored (nor cut: the score
        would be another pair's)."""
        limit = self.model.max_positions
        if limit <= 0:
            return
        for i, (s, t) in enumerate(zip(src, tgt)):
            if len(s) > limit or len(t) + 1 > limit:
                raise UsageError(
                    f"pair {first + i}: {max(len(s), len(t) + 1)} subwords, more than the "
                    f"model's limit of {limit}"
                )


def format_score(score: PairScore, per_token: bool = False) -> str:
    """``total<TAB>mean`` (``<TAB>lp1 lp2 ...`` with ``per_token``), 4 decimals."""
    fields = [f"{score.total:.4f}", f"{score.mean:.4f}"]
    if per_token:
        fields.append(" ".join(f"{lp:.4f}" for lp in score.token_log_probs))
    return "\t".join(fields)


# --- input ---------------------------------------------------------------------------------------


def parallel_pairs(src: Path | str, tgt: Path | str) -> Iterator[tuple[str, str]]:
    """Pairs from two line-aligned files (one of them may be ``-``: stdin)."""
    if not is_stdio(src) and not is_stdio(tgt) and Path(src).is_file() and Path(tgt).is_file():
        n_src, n_tgt = count_lines(src), count_lines(tgt)
        if n_src != n_tgt:  # refused before any scoring
            raise CorpusError(f"{src} has {n_src} lines but {tgt} has {n_tgt}: pairs must align")
    return _zipped(iter_lines(src), iter_lines(tgt), src, tgt)


def _zipped(
    src_lines: Iterator[str], tgt_lines: Iterator[str], src: Path | str, tgt: Path | str
) -> Iterator[tuple[str, str]]:
    missing = object()
    for s, t in itertools.zip_longest(src_lines, tgt_lines, fillvalue=missing):
        if s is missing or t is missing:
            short = display_name(src) if s is missing else display_name(tgt)
            raise CorpusError(f"{short} has fewer lines than the other side: pairs must align")
        yield strip_cr(s), strip_cr(t)


def tsv_pairs(path: Path | str | None) -> Iterator[tuple[str, str]]:
    """Pairs from ``source<TAB>target`` lines (``-`` or ``None``: stdin)."""
    return _split_tabs(iter_lines(path), display_name(path))


def _split_tabs(lines: Iterator[str], name: str) -> Iterator[tuple[str, str]]:
    for number, line in enumerate(lines, 1):
        fields = strip_cr(line).split("\t")
        if len(fields) != 2:
            raise CorpusError(
                f"{name}, line {number}: expected source<TAB>target (one tab), "
                f"found {len(fields) - 1} tabs"
            )
        yield fields[0], fields[1]


# --- the command ---------------------------------------------------------------------------------


def run_score(
    model: Path | list[Path],
    src: Path | None,
    tgt: Path | None,
    tsv: Path | None,
    output: Path | None,
    options: TranslateOptions | None = None,
    per_token: bool = False,
) -> None:
    """``nmt score``: pairs from ``src``/``tgt`` or from TSV lines, scores to ``output``.

    ``options``: batch size, precision, quantization, device and the target language of a
    multilingual model (its tag starts every source, as in translation)."""
    o = options or TranslateOptions()
    if (src is None) != (tgt is None):
        raise UsageError("give --src and --tgt together (or source<TAB>target lines on stdin)")
    if src is not None and tsv is not None:
        raise UsageError("give either --src and --tgt, or -i with source<TAB>target lines")
    one_stdin(src=src, tgt=tgt)
    pairs = parallel_pairs(src, tgt) if src is not None else tsv_pairs(tsv)
    net, tok, cfg, dev = load_for_inference(model, o.device, o.precision, o.quantization)
    model_target = "" if cfg.data.directions else cfg.data.tgt_lang
    tok = tok.for_target(choose_target(tok.languages, model_target, o.tgt_lang))
    size = o.batch_size if o.batch_size is not None else cfg.search.batch_size
    if size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {size}")
    scorer = Scorer(net, tok, dev, o.precision, size)
    count = 0
    with open_output(output) as out:
        for score in scorer.score_stream(pairs):
            out.write(format_score(score, per_token) + "\n")
            count += 1
    log.info("scored %d pairs", count)
