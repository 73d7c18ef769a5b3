"""Pick the beam-search length penalty on the validation set (never on a test set).

Translates the config's validation set with beam search once per penalty alpha (GNMT
penalty, Wu et al. 2016, eq. 14) and prints validation BLEU for each; the best value
goes into the config's ``search.length_penalty``, which ``nmt compare`` then uses.

    python bench/length_penalty.py runs/m30k60-de-en/transformer --alphas 0.6 0.8 1.0 1.2 1.4
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import sacrebleu
import torch

from nmt.artifacts.checkpoint import load_checkpoint, resolve_model_path
from nmt.inference.translator import Translator
from nmt.textio import read_lines


def validation_bleu(run_dir: Path, alphas: list[float], beam: int) -> dict[float, float]:
    """Validation BLEU of the run's selected checkpoint for every length penalty."""
    model, tok, cfg, _ = load_checkpoint(resolve_model_path(run_dir), torch.device("cpu"))
    d = cfg.data
    sources = read_lines(Path(d.dir) / f"{d.valid}.{d.src_lang}")
    refs = read_lines(Path(d.dir) / f"{d.valid}.{d.tgt_lang}")
    scores = {}
    for alpha in alphas:
        search = dataclasses.replace(cfg.search, beam=beam, nbest=1, length_penalty=alpha)
        hyps = Translator(model, tok, search).translate_lines(sources)
        scores[alpha] = sacrebleu.corpus_bleu(hyps, [refs]).score
        print(f"length penalty {alpha:.2f}: validation BLEU {scores[alpha]:.2f}", flush=True)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="run directory (its best checkpoint is used)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.6, 0.8, 1.0, 1.2, 1.4])
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the scores here")
    args = parser.parse_args()
    scores = validation_bleu(args.run_dir, args.alphas, args.beam)
    best = max(scores, key=scores.get)
    print(f"best on validation: length penalty {best:.2f} (BLEU {scores[best]:.2f})")
    if args.json:
        args.json.write_text(json.dumps({"beam": args.beam, "validation_bleu": scores}, indent=2))


if __name__ == "__main__":
    main()
