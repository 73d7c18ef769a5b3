"""How well ``nmt translate --alignments`` agrees with a statistical aligner (eflomal).

    python bench/alignments.py runs/de-en --src data/multi30k/test_2016_flickr.de \
        --train data/multi30k/train --json bench/results/alignments.json

No public gold-standard word alignment for German-English is reachable from the package
registries, so the reference is eflomal (Östling & Tiedemann 2016, "Efficient word
alignment with Markov Chain Monte Carlo", PBML 106), a well-kept Bayesian IBM-model
aligner, run on the model's own outputs:

1. translate the source with ``--alignments`` (the model's links: one per output word,
   from the last decoder layer's cross-attention averaged over heads);
2. align every (source, output) pair with eflomal, trained on Multi30k's training pairs
   plus these pairs, in both directions, over the same whitespace-split words;
3. symmetrize eflomal's two directions: the intersection as sure links S, the union as
   possible links P, and grow-diag-final-and (Koehn et al. 2003) as a single reference;
4. report the alignment error rate AER = 1 - (|A n S| + |A n P|) / (|A| + |S|) (Och & Ney
   2003) of the model's links A against S and P, and precision, recall and F1 against
   grow-diag-final-and.

Statistical alignments are themselves not gold, so these numbers measure agreement.
``eflomal_fwd_vs_gdfa`` scores eflomal's own forward links the same way, as a scale.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

Links = set[tuple[int, int]]


def parse_pharaoh(text: str) -> Links:
    return {tuple(int(x) for x in pair.split("-")) for pair in text.split()}  # type: ignore[misc]


def eflomal_links(src: list[str], tgt: list[str]) -> tuple[list[Links], list[Links]]:
    """Forward (source -> target) and reverse links of every pair, as (i, j) sets."""
    from eflomal import Aligner

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "src").write_text("\n".join(src) + "\n", encoding="utf-8")
        (d / "tgt").write_text("\n".join(tgt) + "\n", encoding="utf-8")
        with open(d / "src", encoding="utf-8") as s, open(d / "tgt", encoding="utf-8") as t:
            Aligner().align(
                s, t, links_filename_fwd=str(d / "fwd"), links_filename_rev=str(d / "rev")
            )
        fwd = [parse_pharaoh(ln) for ln in (d / "fwd").read_text().splitlines()]
        rev = [parse_pharaoh(ln) for ln in (d / "rev").read_text().splitlines()]
    return fwd, rev


def grow_diag_final_and(fwd: Links, rev: Links) -> Links:
    """Koehn et al. (2003)'s symmetrization: start from the intersection, add neighbouring
    union links that align a so far unaligned word, then union links whose both words are
    unaligned."""
    union, links = fwd | rev, set(fwd & rev)
    neighbours = [(-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]
    added = True
    while added:
        added = False
        for i, j in sorted(links):
            for di, dj in neighbours:
                cand = (i + di, j + dj)
                if cand in union and cand not in links:
                    src_free = all(a != cand[0] for a, _ in links)
                    tgt_free = all(b != cand[1] for _, b in links)
                    if src_free or tgt_free:
                        links.add(cand)
                        added = True
    for direction in (fwd, rev):
        for i, j in sorted(direction):
            if all(a != i for a, _ in links) and all(b != j for _, b in links):
                links.add((i, j))
    return links


def scores(ours: list[Links], sure: list[Links], possible: list[Links], ref: list[Links]) -> dict:
    a = sum(len(x) for x in ours)
    a_s = sum(len(x & s) for x, s in zip(ours, sure))
    a_p = sum(len(x & p) for x, p in zip(ours, possible))
    s = sum(len(x) for x in sure)
    hit = sum(len(x & r) for x, r in zip(ours, ref))
    r = sum(len(x) for x in ref)
    precision, recall = hit / max(a, 1), hit / max(r, 1)
    return {
        "aer": 1 - (a_s + a_p) / max(a + s, 1),
        "precision_vs_gdfa": precision,
        "recall_vs_gdfa": recall,
        "f1_vs_gdfa": 2 * precision * recall / max(precision + recall, 1e-9),
        "links_ours": a,
        "links_gdfa": r,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("--src", type=Path, required=True)
    p.add_argument("--train", type=Path, help="training prefix: PREFIX.de and PREFIX.en")
    p.add_argument("--src-lang", default="de")
    p.add_argument("--tgt-lang", default="en")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.tsv"
        cmd = [sys.executable, "-m", "nmt", "--quiet", "translate", str(args.model), "-i",
               str(args.src), "-o", str(out), "--alignments", "--beam", str(args.beam)]  # fmt: skip
        subprocess.run(cmd, check=True)
        rows = [ln.split("\t") for ln in out.read_text(encoding="utf-8").splitlines()]
    sources = args.src.read_text(encoding="utf-8").splitlines()
    hyps, ours = [r[0] for r in rows], [parse_pharaoh(r[-1]) for r in rows]
    train_src, train_tgt = [], []
    if args.train:
        train_src = Path(f"{args.train}.{args.src_lang}").read_text(encoding="utf-8").splitlines()
        train_tgt = Path(f"{args.train}.{args.tgt_lang}").read_text(encoding="utf-8").splitlines()
    fwd, rev = eflomal_links(train_src + sources, train_tgt + hyps)
    fwd, rev = fwd[len(train_src) :], rev[len(train_src) :]
    sure = [f & r for f, r in zip(fwd, rev)]
    possible = [f | r for f, r in zip(fwd, rev)]
    gdfa = [grow_diag_final_and(f, r) for f, r in zip(fwd, rev)]
    result = {"model": str(args.model), "sentences": len(hyps), "beam": args.beam,
              **scores(ours, sure, possible, gdfa),
              "eflomal_fwd_vs_gdfa": scores(fwd, sure, possible, gdfa)}  # fmt: skip
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
