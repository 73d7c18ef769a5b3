"""CTranslate2 exports against `nmt`'s own PyTorch search, measured in one run.

    python bench/ct2_speed.py --run runs/multi30k-de-en/transformer --json bench/ct2_speed.json

Exports the run's Transformer (float32 and int8, with `nmt export`), then translates
test_2016_flickr (1,000 sentences) greedy and with beam 5 through every engine: each
measurement in its own process (so peak RSS is its own), the engines taking turns when
``--repeats`` > 1 (the best of the repeats counts: shared machines are noisy). Reports
sentences/s, the ratio to `nmt` fp32 with the same search, BLEU, and the share of output
lines identical to `nmt` fp32.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# engine name -> what it translates with: the run itself, or its export of that quantization
ENGINES = {"nmt fp32": "run", "ct2 float32": "float32", "ct2 int8": "int8"}


def measure(model: Path, beam: int, data: Path, limit: int, threads: int) -> dict:
    """Sentences/s translating the test set (model loading and a warm-up excluded)."""
    import sacrebleu
    import torch

    from nmt.inference.load import TranslateOptions, make_translator

    if threads:
        torch.set_num_threads(threads)  # CTranslate2 takes torch's count too

    src = (data / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[:limit]
    ref = (data / "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()[:limit]
    translator = make_translator(model, TranslateOptions(beam=beam, device="cpu"))
    translator.translate_lines(src[:32])  # warm-up
    start = time.perf_counter()
    hyps = translator.translate_lines(src)
    seconds = time.perf_counter() - start
    return {
        "sentences_per_s": len(src) / seconds,
        "bleu": sacrebleu.corpus_bleu(hyps, [ref]).score,
        "hyps": hyps,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(model: Path, beam: int, opts: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", str(model), str(beam), opts.data]
    cmd += [str(opts.sentences), str(opts.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"{model} beam {beam} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def export_all(run: Path, folder: Path) -> dict[str, Path]:
    """`nmt export` the run once per quantization; the run itself for `nmt`."""
    models = {"run": run}
    for quantization in (q for q in ENGINES.values() if q != "run"):
        out = folder / f"ct2-{quantization}"
        cmd = [sys.executable, "-m", "nmt", "export", str(run), "--out", str(out)]
        subprocess.run([*cmd, "--quantization", quantization], check=True, cwd=REPO)
        models[quantization] = out
    return models


def bench(opts: argparse.Namespace, folder: Path) -> dict:
    models = export_all(Path(opts.run), folder)
    results: dict = {}
    for _ in range(opts.repeats):
        for beam in (1, 5):
            for engine, model in ENGINES.items():
                got = run_child(models[model], beam, opts)
                key = f"beam{beam} {engine}"
                best = results.get(key)
                if best is None or got["sentences_per_s"] > best["sentences_per_s"]:
                    results[key] = got
    return results


def rows(results: dict) -> list[list[str]]:
    """Table rows: search, engine, sentences/s, ratio to nmt fp32, BLEU, identical, RSS."""
    table = []
    for beam in (1, 5):
        base = results[f"beam{beam} nmt fp32"]
        for engine in ENGINES:
            r = results[f"beam{beam} {engine}"]
            same = sum(a == b for a, b in zip(r["hyps"], base["hyps"])) / len(base["hyps"])
            table.append(
                [
                    "greedy" if beam == 1 else "beam 5",
                    engine,
                    f"{r['sentences_per_s']:.1f}",
                    f"{r['sentences_per_s'] / base['sentences_per_s']:.2f}x",
                    f"{r['bleu']:.2f}",
                    f"{same:.1%}",
                    f"{r['peak_rss_mib']:,.0f}",
                ]
            )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="trained Transformer run directory or checkpoint")
    parser.add_argument("--data", default="data/multi30k")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1, help="turns per engine; best counts")
    parser.add_argument("--threads", type=int, default=0, help="threads per engine (0: all)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        model, beam, data, limit, threads = opts.child
        print(json.dumps(measure(Path(model), int(beam), Path(data), int(limit), int(threads))))
        return
    if not opts.run:
        parser.error("--run is required")
    with tempfile.TemporaryDirectory(prefix="ct2-bench-") as folder:
        results = bench(opts, Path(folder))
    header = ["search", "engine", "sent/s", "vs nmt fp32", "BLEU", "same as nmt fp32", "RSS MiB"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows(results):
        print("| " + " | ".join(row) + " |")
    if opts.json:
        for r in results.values():
            r.pop("hyps", None)
        Path(opts.json).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
