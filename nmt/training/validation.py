"""Validation: teacher-forced loss and greedy BLEU on the validation set.

Rank 0 computes the scores and broadcasts them: early stopping, the plateau schedule
and the choice of the best checkpoint depend on them, and every rank must decide alike.
A multilingual run scores each direction on its own validation text and takes the mean
over the directions as its BLEU: every direction counts alike, whatever its size.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import sacrebleu
import torch

from nmt.config import SearchConfig
from nmt.data.store.batches import epoch_batches, make_batch
from nmt.inference.translator import Translator
from nmt.models.base import Seq2Seq
from nmt.training.distributed import broadcast_object
from nmt.training.end_average import average_of_last, swapped_weights
from nmt.training.loss import batch_loss_sum
from nmt.training.prefetch import to_device
from nmt.training.reporting import Reporter
from nmt.training.setup import Corpora
from nmt.training.state import Checkpointer, TrainState

log = logging.getLogger("nmt.training")

Scores = tuple[float, float, dict[str, float]]  # nll, BLEU, BLEU per direction (multilingual)

# Sentences per greedy-search batch when validating. On a GPU a decoding step is bound by
# kernel launches and by the host's check of which sentences have ended, not by the batch
# width, so a wider batch costs few more steps' time; on a CPU the work grows with width.
VALID_BATCH_SENTENCES = {"cpu": 128}


class Validator:
    """Scores a model on the run's validation data, and records what a validation found."""

    def __init__(
        self, data: Corpora, device: torch.device, checkpoints: Checkpointer, reporter: Reporter
    ) -> None:
        self.data, self.device = data, device
        self.checkpoints, self.reporter = checkpoints, reporter
        self.cfg, self.tok, self.ctx = checkpoints.cfg, checkpoints.tok, checkpoints.ctx

    def validate(self, model: Seq2Seq, state: TrainState, seconds: Callable[[], float]) -> dict:
        """A validation during training: score, record, keep the best and a step checkpoint."""
        scores = self.scores(model)
        state.elapsed = seconds()
        record = self.record(model, state, scores)
        state.bad_validations = 0 if record["best"] else state.bad_validations + 1
        state.history.append(record)
        self.checkpoints.save_step(model, {"step": state.step, "valid_bleu": record["valid_bleu"]})
        return record

    def validate_average(self, model: Seq2Seq, state: TrainState) -> dict | None:
        """Validate the average of the last ``train.average_last`` step checkpoints; it
        becomes best.safetensors only if it beats the best single checkpoint."""
        found = average_of_last(self.checkpoints.run, self.cfg.train.average_last, self.device)
        if found is None:
            return None
        weights, names = found
        with swapped_weights(model, weights):
            record = self.record(model, state, self.scores(model), {"averaged": names})
        if self.ctx.is_main:
            bleu = record["valid_bleu"]
            log.info("average of %d checkpoints: validation BLEU %.2f", len(names), bleu)
        return record

    def record(
        self,
        model: Seq2Seq,
        state: TrainState,
        scores: Scores,
        extra: dict | None = None,
    ) -> dict:
        """The record step shared by both validations: report, and keep a new best."""
        (nll, bleu, by_direction), extra = scores, extra or {}
        improved = bleu > state.best_bleu
        record = {**validation_record(state, nll, bleu, improved), **extra}
        if by_direction:
            record["valid_bleu_directions"] = by_direction
        self.reporter.validation(record)
        if improved:
            state.best_bleu = bleu
            meta = {"step": state.step, "valid_bleu": bleu, **extra}
            self.checkpoints.save_best(model, meta)
        return record

    def scores(self, model: Seq2Seq) -> Scores:
        """(nll, bleu, BLEU per direction) on every rank; with ``train.valid_bleu`` off,
        -nll stands for BLEU. BLEU per direction: multilingual runs only (else {}); their
        BLEU is the mean over the directions."""
        scores = None
        if self.ctx.is_main:
            nll = self.nll(model)
            by_direction = self.bleu(model) if self.cfg.train.valid_bleu else {}
            bleu = sum(by_direction.values()) / len(by_direction) if by_direction else -nll
            per_direction = by_direction if self.cfg.data.directions else {}
            scores = (nll, bleu, per_direction)
        return broadcast_object(scores, self.ctx)

    @torch.no_grad()
    def nll(self, model: Seq2Seq) -> float:
        """Mean per-token negative log-likelihood (no label smoothing) on the validation set."""
        model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)  # summed on the device
        count = 0
        for indices in epoch_batches(self.data.valid, self.cfg.train.batch_tokens, 0, 0):
            batch = to_device(make_batch(self.data.valid, indices, self.tok), self.device)
            precision, pad = self.cfg.train.precision, self.tok.pad_id
            total += batch_loss_sum(model, batch, precision, pad, label_smoothing=0.0)
            count += batch.n_tokens
        return total.item() / max(count, 1)

    def bleu(self, model: Seq2Seq) -> dict[str, float]:
        """sacreBLEU of greedy translations of each direction's validation sources, in the
        training precision, in batches as large as the device makes worthwhile."""
        s = self.cfg.search
        search = SearchConfig(
            beam=1,
            nbest=1,
            max_len_a=s.max_len_a,
            max_len_b=s.max_len_b,
            batch_size=VALID_BATCH_SENTENCES.get(self.device.type, 1024),
        )
        found = {}
        for text in self.data.valid_text:
            tok = self.tok.for_target(text.tgt_lang)
            translator = Translator(model, tok, search, self.device, self.cfg.train.precision)
            hyps = translator.translate_lines(text.src)
            found[text.direction] = sacrebleu.corpus_bleu(hyps, [text.ref]).score
        return found


def validation_record(state: TrainState, nll: float, bleu: float, improved: bool) -> dict:
    """One validation's line of metrics.jsonl (and of the run's history)."""
    return {
        "step": state.step,
        "epoch": state.epoch + 1,
        "valid_nll": nll,
        "valid_ppl": math.exp(min(nll, 50)),
        "valid_bleu": bleu,
        "minutes": state.elapsed / 60,
        "best": improved,
    }
