"""A paragraph far longer than the model takes comes out as one complete line.

Concatenates Multi30k test_2016_flickr source sentences into one paragraph of about
2,000 words (more subwords than the model's ``max_src_len``), translates it as one line
(``--split-sentences auto``: split into sentences, translated, joined) and compares it
with the sentences translated one per line and concatenated. The paragraph's output
should be one line whose length is 0.7-1.5x (in fact about 1x) of that concatenation;
``--truncate`` also shows what ``--split-sentences off`` (truncation) would give.

    PYTHONPATH=. python bench/long_lines.py --model runs/t40 --max-sentences 200
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import sacrebleu

from nmt.inference.documents import DocumentOptions, DocumentTranslator
from nmt.inference.load import TranslateOptions, make_translator
from nmt.inference.translator import Translator
from nmt.textio import read_lines

DATA = Path("/work/main/data/multi30k")


def paragraph_sentences(max_sentences: int, words: int) -> list[str]:
    """Test sentences, in order, until ``words`` words (or ``max_sentences``) are reached."""
    chosen, total = [], 0
    for sentence in read_lines(DATA / "test_2016_flickr.de")[:max_sentences]:
        chosen.append(sentence.strip())
        total += len(sentence.split())
        if total >= words:
            break
    return chosen


def translate_timed(
    translator: Translator, lines: list[str], split: str
) -> tuple[list[str], float]:
    start = time.perf_counter()
    out = list(
        DocumentTranslator(translator, DocumentOptions(split_sentences=split)).translate(lines)
    )
    return out, time.perf_counter() - start


def run(model: Path, max_sentences: int, words: int, max_src_len: int | None, truncate: bool):
    translator = make_translator(model, TranslateOptions(device="cpu"))
    if max_src_len:
        translator.max_src_len = max_src_len
    sentences = paragraph_sentences(max_sentences, words)
    paragraph = " ".join(sentences)
    one_line, para_s = translate_timed(translator, [paragraph], "auto")
    per_sentence, sent_s = translate_timed(translator, sentences, "auto")  # a long one: chunks
    joined = " ".join(t for t in per_sentence if t)
    results = {
        "sentences": len(sentences),
        "paragraph_words": len(paragraph.split()),
        "paragraph_subwords": len(translator.tok.encode_src([paragraph])[0]),
        "max_src_len": translator.max_src_len,
        "output_lines": len(one_line),
        "output_words": len(one_line[0].split()),
        "per_sentence_words": len(joined.split()),
        "length_ratio": round(len(one_line[0]) / max(len(joined), 1), 3),
        "bleu_vs_per_sentence": round(sacrebleu.corpus_bleu(one_line, [[joined]]).score, 2),
        "seconds_paragraph": round(para_s, 1),
        "seconds_per_sentence": round(sent_s, 1),
    }
    results["within_0.7_1.5"] = 0.7 <= results["length_ratio"] <= 1.5
    if truncate:
        cut, cut_s = translate_timed(translator, [paragraph], "off")
        results["truncated_length_ratio"] = round(len(cut[0]) / max(len(joined), 1), 3)
        results["seconds_truncated"] = round(cut_s, 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="run dir or checkpoint")
    parser.add_argument("--max-sentences", type=int, default=1000)
    parser.add_argument("--words", type=int, default=2000, help="paragraph length in words")
    parser.add_argument("--max-src-len", type=int, help="pretend the model takes only this many")
    parser.add_argument("--truncate", action="store_true", help="also translate it truncated")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = run(args.model, args.max_sentences, args.words, args.max_src_len, args.truncate)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
