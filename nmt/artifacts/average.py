"""Checkpoint averaging: the mean of the weights of a run's last N checkpoints.

Averaging the parameters of the last few checkpoints of one run smooths out the noise
of the final updates and usually gains a little BLEU at no cost (Vaswani et al. 2017,
sec. 6.1: "averaging the last 5 checkpoints"; fairseq's ``average_checkpoints.py``).
It only makes sense for checkpoints of the same run (or at least the same architecture
and tokenizer), which :func:`average_checkpoints` checks.

Training writes ``RUN_DIR/ckpt/step_<N>.safetensors`` at every validation and keeps the
newest ``train.keep_checkpoints`` of them (:func:`save_step_checkpoint`). The average is
written as a normal nmt checkpoint, so ``nmt translate`` and ``nmt evaluate`` load it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from nmt.artifacts.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from nmt.artifacts.rundir import RunDir
from nmt.config import Config, to_dict
from nmt.models.base import Seq2Seq
from nmt.tokenizer import Tokenizer

log = logging.getLogger("nmt.artifacts.average")


def step_checkpoints(run_dir: Path) -> list[Path]:
    """``RUN_DIR/ckpt/step_<N>.safetensors`` files, oldest step first."""
    return RunDir(run_dir).step_checkpoints()


def save_step_checkpoint(
    run_dir: Path, model: Seq2Seq, tok: Tokenizer, cfg: Config, meta: dict, keep: int
) -> Path | None:
    """Write this step's checkpoint (atomically) and delete all but the newest ``keep``."""
    if keep <= 0:
        return None
    path = RunDir(run_dir).step_checkpoint(meta["step"])
    save_checkpoint(path, model, tok, cfg, meta)
    for old in step_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def pick_checkpoints(inputs: list[Path], last: int) -> list[Path]:
    """A run directory means its ``last`` newest step checkpoints; files are taken as given."""
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        found = step_checkpoints(inputs[0])
        if not found:
            raise CheckpointError(
                f"{inputs[0]} has no ckpt/step_*.safetensors checkpoints "
                "(train with train.keep_checkpoints > 0)"
            )
        if len(found) < last:
            log.warning("only %d step checkpoints in %s; averaging all", len(found), inputs[0])
        return found[-last:]
    return [Path(p) for p in inputs]


def _same_setup(cfg: Config, tok: Tokenizer, other_cfg: Config, other_tok: Tokenizer) -> bool:
    same_tok = tok.src_proto == other_tok.src_proto and tok.tgt_proto == other_tok.tgt_proto
    return same_tok and to_dict(cfg)["model"] == to_dict(other_cfg)["model"]


def average_checkpoints(
    paths: list[Path], device: str | torch.device = "cpu"
) -> tuple[Seq2Seq, Tokenizer, Config, dict]:
    """The first checkpoint's model with every floating-point tensor replaced by the mean.

    Sums run in float64 one checkpoint at a time, so memory holds two models, not N.
    Integer tensors (if any) are kept from the first checkpoint.
    """
    if not paths:
        raise CheckpointError("no checkpoints to average")
    model, tok, cfg, meta = load_checkpoint(paths[0], device)
    sums = {k: v.double() for k, v in model.state_dict().items() if v.is_floating_point()}
    for path in paths[1:]:
        other, other_tok, other_cfg, _ = load_checkpoint(path, device)
        if not _same_setup(cfg, tok, other_cfg, other_tok):
            raise CheckpointError(
                f"{path} has another model config or tokenizer than {paths[0]}: "
                "only checkpoints of the same model can be averaged"
            )
        for name, value in other.state_dict().items():
            if name in sums:
                sums[name] += value.double()
    state = model.state_dict()
    for name, total in sums.items():
        state[name] = (total / len(paths)).to(state[name].dtype)
    model.load_state_dict(state)
    meta = {"averaged": [str(p) for p in paths], "step": meta.get("step")}
    return model, tok, cfg, meta


def average_to_file(
    inputs: list[Path], output: Path, last: int = 5, device: str | torch.device = "cpu"
) -> list[Path]:
    """``nmt average``: average the chosen checkpoints, write one nmt checkpoint."""
    paths = pick_checkpoints(inputs, last)
    model, tok, cfg, meta = average_checkpoints(paths, device)
    save_checkpoint(Path(output), model, tok, cfg, meta)
    log.info("averaged %d checkpoints into %s", len(paths), output)
    return paths
