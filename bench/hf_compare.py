"""A trained Transformer in nmt and as its Hugging Face export, side by side in one run.

    python bench/hf_compare.py --run /work/main/runs/t40 --data /work/main/data/multi30k \
        --max-sentences 300 --json bench/results/hf_compare.json

Exports the run with `nmt export --format huggingface`, then translates the first
``--max-sentences`` lines of test_2016_flickr:

- greedy: nmt (``--beam 1``) and transformers ``generate(num_beams=1)``: the share of
  output lines (and of token sequences) that are identical;
- beam 5: nmt and ``generate(num_beams=5)`` with the export's generation_config (the
  same alpha, but transformers normalises by len ** alpha, nmt by GNMT's
  ((5 + len) / 6) ** alpha): BLEU of each and the difference;
- speed: sentences/s of each beam-5 search (loading and a warm-up excluded), both in
  batches of ``--batch-size`` sentences sorted by length, on ``--threads`` CPU threads;
  ONNX Runtime too when optimum can export the class (it reports why not otherwise).

Prints one JSON object (and writes it to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sacrebleu
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nmt.artifacts.huggingface import export_huggingface  # noqa: E402
from nmt.inference.load import TranslateOptions, make_translator  # noqa: E402


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line]
    return names[0] if names else platform.processor()


def nmt_translate(run: Path, lines: list[str], beam: int, batch: int, alpha=None) -> tuple:
    """Texts, token ids and seconds of nmt's own search (after a warm-up)."""
    opts = TranslateOptions(beam=beam, batch_size=batch, device="cpu", length_penalty=alpha)
    translator = make_translator(run, opts)
    translator.translate_lines(lines[:16])  # warm-up
    start = time.perf_counter()
    hyps = [h[0] for h in translator.translate_stream(lines)]
    seconds = time.perf_counter() - start
    return [translator.detok(h) for h in hyps], [h.tokens for h in hyps], seconds


def hf_translate(model, tokenizer, lines: list[str], beam: int, batch: int, limit, alpha=None):
    """Texts, token ids and seconds of transformers' generate, batched by length."""
    order = sorted(range(len(lines)), key=lambda i: len(lines[i]))
    texts: list = [None] * len(lines)
    tokens: list = [None] * len(lines)
    special = {tokenizer.pad_token_id, tokenizer.eos_token_id, model.config.decoder_start_token_id}
    start = time.perf_counter()
    for b in range(0, len(order), batch):
        rows = order[b : b + batch]
        enc = tokenizer([lines[i] for i in rows], return_tensors="pt", padding=True)
        src_len = int(enc["attention_mask"].sum(dim=1).max())
        with torch.no_grad():
            extra = {} if alpha is None else {"length_penalty": alpha}
            out = model.generate(
                **enc, num_beams=beam, do_sample=False, max_new_tokens=limit(src_len), **extra
            )
        decoded = tokenizer.batch_decode(out, skip_special_tokens=True)
        for i, ids, text in zip(rows, out.tolist(), decoded):
            tokens[i] = [t for t in ids if t not in special]
            texts[i] = text
    return texts, tokens, time.perf_counter() - start


def onnx_model(hf_dir: Path, folder: Path):
    """An ONNX Runtime seq2seq model of the export, or the reason there is none."""
    try:
        from optimum.onnxruntime import ORTModelForSeq2SeqLM
    except ImportError as e:
        return None, f"optimum.onnxruntime does not import ({e})"
    try:
        return ORTModelForSeq2SeqLM.from_pretrained(str(hf_dir), export=True), None
    except Exception as e:  # noqa: BLE001  (report whatever stops the export)
        return None, f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", default="/work/main/runs/t40")
    p.add_argument("--data", default="/work/main/data/multi30k")
    p.add_argument("--max-sentences", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default="")
    p.add_argument("--length-penalty", type=float, default=None, help="alpha for both engines")
    p.add_argument("--repeats", type=int, default=1, help="beam-5 timings, engines alternating")
    opts = p.parse_args()
    torch.set_num_threads(opts.threads)
    import transformers

    transformers.logging.set_verbosity_error()
    data = Path(opts.data)
    src = (data / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    ref = (data / "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()
    src, ref = src[: opts.max_sentences], ref[: opts.max_sentences]
    run = Path(opts.run)
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = export_huggingface(run, Path(tmp) / "hf")
        model = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(hf_dir)).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
        from nmt.artifacts.checkpoint import load_checkpoint

        _, _, cfg, meta = load_checkpoint(run)
        s = cfg.search

        def limit(src_len: int) -> int:  # nmt's a * S + b, minus the forced EOS step
            return max(1, int(s.max_len_a * src_len + s.max_len_b) - 1)

        hf_tokenizer_ids = tokenizer(src)["input_ids"]
        nmt_g, nmt_g_tok, _ = nmt_translate(run, src, 1, opts.batch_size)
        hf_g, hf_g_tok, _ = hf_translate(model, tokenizer, src, 1, opts.batch_size, limit)
        alpha = opts.length_penalty
        hf_translate(model, tokenizer, src[:16], 5, opts.batch_size, limit)  # warm-up
        nmt_s = hf_s = float("inf")
        for _ in range(opts.repeats):  # alternating, the best of the repeats counts
            nmt_b, _, seconds = nmt_translate(run, src, 5, opts.batch_size, alpha)
            nmt_s = min(nmt_s, seconds)
            hf_b, _, seconds = hf_translate(model, tokenizer, src, 5, opts.batch_size, limit, alpha)
            hf_s = min(hf_s, seconds)
        ort, why_not = onnx_model(hf_dir, Path(tmp))
        onnx = {"available": ort is not None, "reason": why_not}
        if ort is not None:
            hf_translate(ort, tokenizer, src[:16], 5, opts.batch_size, limit)
            ort_b, _, ort_s = hf_translate(ort, tokenizer, src, 5, opts.batch_size, limit)
            onnx |= {
                "beam5_sent_per_s": len(src) / ort_s,
                "beam5_bleu": sacrebleu.corpus_bleu(ort_b, [ref]).score,
            }
    _, tok, _, _ = load_checkpoint(run)
    bleu_nmt = sacrebleu.corpus_bleu(nmt_b, [ref]).score
    bleu_hf = sacrebleu.corpus_bleu(hf_b, [ref]).score
    result = {
        "host": cpu_name(),
        "threads": opts.threads,
        "run": str(run),
        "step": meta.get("step"),
        "sentences": len(src),
        "transformers": transformers.__version__,
        "architecture": type(model).__name__,
        "tokenizer_ids_identical": hf_tokenizer_ids == tok.encode_src(src),
        "greedy_identical_lines": sum(a == b for a, b in zip(nmt_g, hf_g)) / len(src),
        "greedy_identical_tokens": sum(a == b for a, b in zip(nmt_g_tok, hf_g_tok)) / len(src),
        "greedy_differing": [
            {"line": i, "nmt": a, "transformers": b}
            for i, (a, b) in enumerate(zip(nmt_g, hf_g))
            if a != b
        ][:5],
        "greedy_bleu": {
            "nmt": sacrebleu.corpus_bleu(nmt_g, [ref]).score,
            "transformers": sacrebleu.corpus_bleu(hf_g, [ref]).score,
        },
        "beam5_bleu": {"nmt": bleu_nmt, "transformers": bleu_hf, "diff": bleu_hf - bleu_nmt},
        "beam5_identical_lines": sum(a == b for a, b in zip(nmt_b, hf_b)) / len(src),
        "beam5_sent_per_s": {"nmt": len(src) / nmt_s, "transformers": len(src) / hf_s},
        "onnxruntime": onnx,
        "length_penalty": s.length_penalty if alpha is None else alpha,
        "repeats": opts.repeats,
        "batch_size": opts.batch_size,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if opts.json:
        Path(opts.json).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
