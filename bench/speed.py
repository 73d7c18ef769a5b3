"""Training and translation speed of the three backbones: optimized paths vs plain fp32.

Every figure is measured in its own subprocess (so peak RSS belongs to that measurement
alone) and set next to the plain fp32 eager figure measured in the same run, as a ratio:
machines are noisy, ratios from one run are what to compare.

    python bench/speed.py --runs runs/multi30k-de-en --json bench/speed.json

- training: target tokens/s over ``--steps`` updates after ``--warmup`` updates, on the
  real Multi30k batches of each config (``configs/<backbone>.yaml``), fp32 vs bf16;
- translation: sentences/s on test_2016_flickr, greedy and beam 5, with the trained
  checkpoint in ``--runs/<backbone>`` (skipped when missing), fp32 vs bf16; the bf16
  output is compared with fp32 (identical lines, BLEU difference).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BACKBONES = ("lstm", "attention", "transformer")
VARIANTS = {"fp32": ("fp32", "none"), "bf16": ("bf16", "none"), "int8": ("fp32", "int8")}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_training(backbone: str, precision: str, steps: int, warmup: int) -> dict:
    """Target tokens/s of ``steps`` full updates (forward, loss, backward, Adam)."""
    from nmt.config import load_config
    from nmt.training import Trainer

    cfg = load_config(REPO / "configs" / f"{backbone}.yaml", [f"train.precision={precision}"])
    trainer = Trainer(cfg, Path("/tmp/nmt-bench-unused"))
    batches = trainer.epoch_shard()[: warmup + steps]
    from nmt.data.store.batches import make_batch

    data = [make_batch(trainer.data.train, idx, trainer.tok) for idx in batches]
    for batch in data[:warmup]:
        trainer.train_step([batch])
    start, tokens = time.perf_counter(), 0
    for batch in data[warmup:]:
        trainer.train_step([batch])
        tokens += batch.n_tokens
    seconds = time.perf_counter() - start
    return {"tokens_per_s": tokens / seconds, "steps": steps, "peak_rss_mib": peak_rss_mib()}


def measure_translation(run: Path, variant: str, beam: int, data: Path, limit: int) -> dict:
    """Sentences/s translating test_2016_flickr; returns the output for comparisons."""
    import sacrebleu

    from nmt.inference.load import TranslateOptions, make_translator

    src = (data / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[:limit]
    ref = (data / "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()[:limit]
    precision, quantization = VARIANTS[variant]
    translator = make_translator(
        run,
        TranslateOptions(beam=beam, precision=precision, device="cpu", quantization=quantization),
    )
    translator.translate_lines(src[:32])  # warm-up
    start = time.perf_counter()
    hyps = translator.translate_lines(src)
    seconds = time.perf_counter() - start
    bleu = sacrebleu.corpus_bleu(hyps, [ref]).score
    return {
        "sentences_per_s": len(src) / seconds,
        "bleu": bleu,
        "hyps": hyps,
        "peak_rss_mib": peak_rss_mib(),
    }


def run_child(args: list[str], env: dict[str, str] | None = None) -> dict:
    """One measurement in a fresh interpreter (``env``: its environment, e.g. an allocator
    in LD_PRELOAD); its JSON result comes back on stdout."""
    cmd = [sys.executable, __file__, "--child", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def bench_backbone(backbone: str, opts: argparse.Namespace) -> dict:
    result: dict = {"backbone": backbone, "train": {}, "translate": {}}
    for precision in ("fp32", "bf16"):
        result["train"][precision] = run_child(
            ["train", backbone, precision, str(opts.steps), str(opts.warmup)]
        )
    from nmt.artifacts.rundir import RunDir

    run = Path(opts.runs) / backbone
    if not RunDir(run).best.is_file():
        return result
    for beam in (1, 5):
        for variant in VARIANTS:
            key = f"beam{beam}_{variant}"
            result["translate"][key] = run_child(
                ["translate", str(run), variant, str(beam), str(opts.data), str(opts.sentences)]
            )
    return result


def summarize(result: dict) -> list[list[str]]:
    """Table rows: figure, plain fp32, optimized, ratio, peak RSS, BLEU (translation)."""
    rows = []
    t = result["train"]
    base, fast = t["fp32"]["tokens_per_s"], t["bf16"]["tokens_per_s"]
    rss = f"{t['bf16']['peak_rss_mib']:,.0f} (fp32 {t['fp32']['peak_rss_mib']:,.0f})"
    rows.append(
        ["train tok/s, bf16", f"{base:,.0f}", f"{fast:,.0f}", f"{fast / base:.2f}x", rss, ""]
    )
    for beam in (1, 5):
        tr = result["translate"]
        if f"beam{beam}_fp32" not in tr:
            continue
        base = tr[f"beam{beam}_fp32"]
        for variant in ("bf16", "int8"):
            rows.append(_translation_row(beam, variant, base, tr[f"beam{beam}_{variant}"]))
    return rows


def _translation_row(beam: int, variant: str, base: dict, fast: dict) -> list[str]:
    same = sum(x == y for x, y in zip(base["hyps"], fast["hyps"])) / len(base["hyps"])
    speed = fast["sentences_per_s"] / base["sentences_per_s"]
    name = f"{'greedy' if beam == 1 else 'beam 5'} sent/s, {variant}"
    return [
        name,
        f"{base['sentences_per_s']:.1f}",
        f"{fast['sentences_per_s']:.1f}",
        f"{speed:.2f}x",
        f"{fast['peak_rss_mib']:,.0f} (fp32 {base['peak_rss_mib']:,.0f})",
        f"{base['bleu']:.2f} -> {fast['bleu']:.2f}, {same:.0%} identical",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    parser.add_argument(
        "--runs", default="runs/multi30k-de-en", help="trained run dirs per backbone"
    )
    parser.add_argument("--data", default="data/multi30k")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=1000, help="test sentences to translate")
    parser.add_argument("--json", default=None, help="write all results here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        return child(opts.child)
    from rich.console import Console
    from rich.table import Table

    results = [bench_backbone(b, opts) for b in opts.backbones]
    for result in results:
        table = Table(title=f"{result['backbone']}: optimized vs plain fp32, one run")
        for col in ("figure", "plain fp32", "optimized", "ratio", "peak RSS MiB", "BLEU"):
            table.add_column(col)
        for row in summarize(result):
            table.add_row(*row)
        Console().print(table)
    if opts.json:
        for r in results:
            for v in r["translate"].values():
                v.pop("hyps", None)
        Path(opts.json).write_text(json.dumps(results, indent=2), encoding="utf-8")


def child(args: list[str]) -> None:
    import torch

    torch.manual_seed(0)
    if args[0] == "train":
        out = measure_training(args[1], args[2], int(args[3]), int(args[4]))
    else:
        out = measure_translation(Path(args[1]), args[2], int(args[3]), Path(args[4]), int(args[5]))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
