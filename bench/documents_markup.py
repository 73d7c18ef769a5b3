"""Inline markup on real sentences: are the tags kept, and does markup cost translation quality?

Builds a marked-up test set from Multi30k test_2016_flickr: each source sentence gets 1-3
random inline tags around words (``<b>``, ``<i>``, ``<a href="...">``) and one placeholder
(``{name}``, ``%s`` or a URL), seeded. Translates it with ``--markup xml`` and the same
sentences without markup, and reports:

- the share of outputs that parse as XML and carry exactly the input's tags and
  placeholders (the guarantee: 100%);
- BLEU of the tag-stripped marked-up output and of the plain translation against the
  references, and BLEU of the one against the other (markup should change nothing);
- where the tags went: the share of tags wrapping at least one target word, and the share
  whose wrapped words occur in the reference (a weak proxy: Multi30k has no gold word
  alignments, so whether a tag wraps *the* reference word aligned to its source words
  cannot be measured here).

    PYTHONPATH=. python bench/documents_markup.py --model runs/t40 --max-sentences 200
"""

from __future__ import annotations

import argparse
import html
import json
import random
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import sacrebleu

from nmt.inference.documents import DocumentOptions, DocumentTranslator
from nmt.inference.load import TranslateOptions, make_translator
from nmt.inference.markup import PLACEHOLDER, markup_signature
from nmt.textio import read_lines

DATA = Path("/work/main/data/multi30k")
TAGS = [("<b>", "</b>"), ("<i>", "</i>"), ('<a href="https://x.org/?a=1&amp;b=2">', "</a>")]
PLACEHOLDERS = ["{name}", "%s", "https://example.org/docs"]


def mark_up(sentence: str, rng: random.Random) -> str:
    """``sentence`` with 1-3 tags around single words and one placeholder, at random."""
    words = [html.escape(w, quote=False) for w in sentence.split()]
    chosen = rng.sample(range(len(words)), min(len(words), rng.randint(1, 3)))
    for i in chosen:
        open_tag, close_tag = rng.choice(TAGS)
        words[i] = open_tag + words[i] + close_tag
    words.insert(rng.randint(0, len(words)), rng.choice(PLACEHOLDERS))
    return " ".join(words)


def strip_markup(text: str) -> str:
    """The text of a marked-up output: no tags, no placeholders, entities decoded."""
    text = re.sub(r"<[^>]*>", " ", text)
    return " ".join(PLACEHOLDER.sub(" ", html.unescape(text)).split())


def keeps_markup(source: str, output: str) -> bool:
    """Well-formed XML with exactly the source's tags and placeholders."""
    try:
        ET.fromstring(f"<r>{output}</r>")
    except ET.ParseError:
        return False
    return markup_signature(source, "xml")[0] == markup_signature(output, "xml")[0]


def wrapped_words(output: str) -> list[list[str]]:
    """The words each tag of ``output`` wraps (placeholders and anchors' URLs excluded)."""
    root = ET.fromstring(f"<r>{output}</r>")
    return [strip_markup("".join(e.itertext())).split() for e in root.iter() if e is not root]


def run(model: Path, max_sentences: int, beam: int | None, seed: int) -> dict:
    sources = read_lines(DATA / "test_2016_flickr.de")[:max_sentences]
    refs = read_lines(DATA / "test_2016_flickr.en")[:max_sentences]
    rng = random.Random(seed)
    marked = [mark_up(s, rng) for s in sources]
    translator = make_translator(model, TranslateOptions(beam=beam, device="cpu"))
    start = time.perf_counter()
    plain_out = list(DocumentTranslator(translator, DocumentOptions()).translate(sources))
    plain_s = time.perf_counter() - start
    start = time.perf_counter()
    marked_out = list(DocumentTranslator(translator, DocumentOptions("xml")).translate(marked))
    marked_s = time.perf_counter() - start
    kept = [keeps_markup(s, o) for s, o in zip(marked, marked_out)]
    stripped = [strip_markup(o) for o in marked_out]
    wraps = [(w, ref) for o, ref, ok in zip(marked_out, refs, kept) if ok for w in wrapped_words(o)]
    lowered = [([x.lower().strip(".,") for x in w], ref) for w, ref in wraps]
    in_ref = [bool(set(w) & set(ref.lower().replace(".", " ").split())) for w, ref in lowered]
    return {
        "sentences": len(sources),
        "well_formed_exact_markup_pct": 100 * sum(kept) / len(kept),
        "bleu_plain": sacrebleu.corpus_bleu(plain_out, [refs]).score,
        "bleu_marked_stripped": sacrebleu.corpus_bleu(stripped, [refs]).score,
        "bleu_stripped_vs_plain": sacrebleu.corpus_bleu(stripped, [plain_out]).score,
        "tags": len(wraps),
        "tags_wrapping_words_pct": 100 * sum(bool(w) for w, _ in wraps) / max(len(wraps), 1),
        "tags_wrapping_a_reference_word_pct": 100 * sum(in_ref) / max(len(in_ref), 1),
        "seconds_plain": round(plain_s, 1),
        "seconds_marked": round(marked_s, 1),
        "example": {"source": marked[0], "output": marked_out[0]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="run dir or checkpoint")
    parser.add_argument("--max-sentences", type=int, default=1000)
    parser.add_argument("--beam", type=int, help="default: the model config's")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = run(args.model, args.max_sentences, args.beam, args.seed)
    print(json.dumps(results, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
