"""Training: everything ``nmt train`` needs and translation never loads.

run.py          entry point: one run from a config (``nmt train``, ``nmt compare``)
loop.py         Trainer: epochs, updates, when to validate and stop
setup.py        tokenizer, corpora, optimizer: what a run needs before its first update
subword_sampling.py  subword regularization: the training pairs re-segmented each epoch
warmstart.py    fine-tuning (--init): the parent checkpoint's weights and tokenizer
validation.py   validation loss and BLEU, the record of a validation, the best checkpoint
end_average.py  end-of-training checkpoint averaging (train.average_last)
state.py        checkpoints and resume: optimizer, schedule, RNG, position in the epoch
reporting.py    progress bar, metrics.jsonl, TensorBoard curves
stopping.py     stop conditions, SIGINT/SIGTERM (and the exit status after them), the clock
schedule.py     learning-rate schedules
loss.py         the fused label-smoothed cross-entropy
distributed.py  several processes under torchrun (DDP)
ledger.py       losses and skipped updates counted on the device, read now and then
prefetch.py     batches pinned and copied to the GPU while it computes
"""

from nmt.training.loop import Trainer, TrainingError
from nmt.training.run import TrainOutcome, run_training, train_from_config

__all__ = ["Trainer", "TrainOutcome", "TrainingError", "run_training", "train_from_config"]
