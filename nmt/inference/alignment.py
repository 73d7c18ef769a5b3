"""Word alignments between a source sentence and its translation, from the model's attention.

How (``nmt translate --alignments``, and for other modules such as markup transfer):

1. After the search, the chosen output is force-decoded once more through ``decode_step``
   with :meth:`~nmt.models.base.Seq2Seq.report_attention` on (:func:`output_attention`).
   This gives one row of source weights per output subword (T, S) whatever search made the
   output (beam, constraints, prefix, ensemble: an ensemble reports its members' mean).
   The attention RNN reports its (only) attention; the Transformer reports the
   encoder-decoder attention of its **last decoder layer, averaged over all heads**; the
   LSTM without attention reports none and alignments are refused.
2. :func:`align_words` maps subword pieces to words: a SentencePiece piece starting with
   ``▁`` starts a new word, so piece *p* belongs to word (number of word starts up to *p*)
   - 1; words are the whitespace-split user source and output text, 0-based.
3. For every target word *j* the rows of its pieces are summed, the columns of each
   source word are summed (the source EOS column and a multilingual model's target tag
   column are dropped), and *j* is aligned to the
   source word with the largest total: every output word gets exactly one link ``i-j``.

Attention is not alignment (Koehn & Knowles 2017, sec. 3.5; Garg et al. 2019 find the
penultimate Transformer layer better than the last): the links are a fair guess for
content words and a rough one elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.data.batch import pad_sequences
from nmt.errors import UsageError
from nmt.inference.guide import Guide
from nmt.inference.search import Hypothesis, attention_reported
from nmt.inference.translator import Translator
from nmt.models.base import Seq2Seq
from nmt.tokenizer import tag_language

WORD_START = "\u2581"  # SentencePiece's ▁


def word_index(pieces: list[str], words: int) -> list[int]:
    """The 0-based word of each piece (pieces starting with ▁ open a new word), kept
    within ``words`` (the count of whitespace-split words of the text)."""
    index, current = [], -1
    for piece in pieces:
        if piece.startswith(WORD_START) or current < 0:
            current += 1
        index.append(max(0, min(current, words - 1)))
    return index


def align_words(
    src_text: str,
    tgt_text: str,
    src_pieces: list[str],
    tgt_pieces: list[str],
    attention: list[list[float]] | Tensor,
) -> list[tuple[int, int]]:
    """Pharaoh links ``(source word, target word)``, 0-based, one per target word.

    ``src_pieces``: the source's subword pieces (a trailing ``</s>`` and a leading
    target-language tag are ignored); ``tgt_pieces``: the output's pieces (no EOS);
    ``attention``: (T, S) weights, row t for output piece t over the source pieces (extra
    rows and columns, such as EOS, are ignored). Words are ``src_text.split()`` and
    ``tgt_text.split()``. Returns [] when either side has no words.
    """
    src_words, tgt_words = len(src_text.split()), len(tgt_text.split())
    columns = [
        k for k, p in enumerate(src_pieces) if p != "</s>" and (k or tag_language(p) is None)
    ]
    pieces = [src_pieces[k] for k in columns]
    if not src_words or not tgt_words or not pieces or not tgt_pieces:
        return []
    weights = torch.as_tensor(attention, dtype=torch.float32)  # (T', S')
    weights = weights[: len(tgt_pieces), columns[0] :][:, : len(pieces)]  # (T, S)
    src_of = torch.tensor(word_index(pieces, src_words)[: weights.size(1)])  # (S,)
    tgt_of = torch.tensor(word_index(tgt_pieces, tgt_words)[: weights.size(0)])  # (T,)
    by_src = torch.zeros(weights.size(0), src_words).index_add_(1, src_of, weights)  # (T, I)
    by_word = torch.zeros(tgt_words, src_words).index_add_(0, tgt_of, by_src)  # (J, I)
    best = by_word.argmax(dim=1).tolist()  # (J,)
    return [(i, j) for j, i in enumerate(best) if j in set(tgt_of.tolist())]


def pharaoh(links: list[tuple[int, int]]) -> str:
    """``0-0 1-2 ...``: the Pharaoh format of word alignments."""
    return " ".join(f"{i}-{j}" for i, j in links)


@torch.no_grad()
def output_attention(
    model: Seq2Seq, src: Tensor, src_mask: Tensor, outputs: list[list[int]], bos_id: int
) -> list[Tensor]:
    """Force-decode ``outputs`` (one token list per source row, no BOS/EOS) and return, per
    row, the attention (T, S) the model reported while producing each output token.

    Raises :class:`UsageError` for a model that reports no attention (the LSTM).
    """
    with attention_reported(model, True):
        state = model.encode(src, src_mask)
        longest = max((len(o) for o in outputs), default=0)
        prev = torch.full((src.size(0),), bos_id, dtype=torch.long, device=src.device)  # (B,)
        padded = pad_sequences([o or [bos_id] for o in outputs], bos_id).to(src.device)  # (B, T)
        rows: list[Tensor] = []
        for t in range(longest):
            _, state = model.decode_step(prev, state)
            weights = state.get("attention")
            if weights is None:
                raise UsageError(no_attention_message(model))
            rows.append(weights.float().cpu())  # (B, S)
            prev = padded[:, t] if t < padded.size(1) else prev  # (B,)
    if not rows:
        return [torch.zeros(0, src.size(1)) for _ in outputs]
    stacked = torch.stack(rows, dim=1)  # (B, T, S)
    return [stacked[b, : len(o)] for b, o in enumerate(outputs)]


def no_attention_message(model: Seq2Seq) -> str:
    return (
        f"--alignments needs attention weights; the {type(model).__name__} backbone has "
        "no attention (use an attention or transformer model)"
    )


def check_reports_attention(translator: Translator) -> None:
    """Refuse early, before translating a whole file, a model without attention."""
    if not isinstance(getattr(translator, "model", None), Seq2Seq):
        raise UsageError(
            "--alignments needs the PyTorch model: translate with the run directory or "
            "checkpoint instead of the export"
        )
    ids = torch.tensor([[translator.tok.eos_id]], device=translator.device)  # (1, 1)
    tok = translator.tok
    output_attention(translator.model.eval(), ids, ids >= 0, [[tok.eos_id]], tok.bos_id)


@dataclass
class AlignedHypothesis:
    """A hypothesis with its detokenized text and word alignment (Pharaoh links)."""

    hypothesis: Hypothesis
    text: str
    alignment: list[tuple[int, int]]


def align_hypotheses(
    translator: Translator, lines: list[str], hyps_per_line: list[list[Hypothesis]]
) -> list[list[AlignedHypothesis]]:
    """Word alignments of already chosen outputs of ``lines`` (one forced pass per batch)."""
    todo = [(i, h) for i, line in enumerate(lines) if line.strip() for h in hyps_per_line[i]]
    aligned: dict[int, list[AlignedHypothesis]] = {i: [] for i in range(len(lines))}
    for i, hyps in enumerate(hyps_per_line):
        if not lines[i].strip():
            aligned[i] = [AlignedHypothesis(h, translator.detok(h), []) for h in hyps]
    size = translator.search.batch_size
    translator.model.eval()
    for start in range(0, len(todo), size):
        batch = todo[start : start + size]
        ids = translator.source_ids([lines[i] for i, _ in batch])
        src = pad_sequences(ids, translator.tok.pad_id).to(translator.device)  # (B, S)
        with torch.inference_mode():
            weights = output_attention(
                translator.model,
                src,
                src != translator.tok.pad_id,
                [h.tokens for _, h in batch],
                translator.tok.bos_id,
            )
        for (i, h), w in zip(batch, weights):
            text = translator.detok(h)
            pieces = translator.tok.tgt_pieces(h.tokens)
            links = align_words(lines[i], text, translator.tok.src_pieces(lines[i]), pieces, w)
            aligned[i].append(AlignedHypothesis(h, text, links))
    return [aligned[i] for i in range(len(lines))]


def translate_aligned(
    translator: Translator, lines: list[str], guides: list[Guide] | None = None
) -> list[list[AlignedHypothesis]]:
    """Translate ``lines`` (with optional guides) and align every hypothesis to its source."""
    check_reports_attention(translator)
    return align_hypotheses(translator, lines, translator.translate_chunk(lines, guides))
