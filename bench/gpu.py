"""The parts of bench/gpu.sh: training speed, time to BLEU, translation speed, one table.

Run through bench/gpu.sh (its header says how, on a lent GPU and as a CPU dry run).
Each part writes ``<out>/<part>.json``; ``table`` prints them as one table.

    python bench/gpu.py sweep --out DIR       tokens/s per precision and batch size
    python bench/gpu.py train --out DIR       the GPU recipe for a few minutes: BLEU by minute
    python bench/gpu.py translate --out DIR   sentences/s, greedy and beam 5 (and test BLEU)
    python bench/gpu.py table --out DIR       everything above, plus the test-suite summary

``--dry`` shrinks every part to a CPU smoke run of the same code paths.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a copy of the repository without installing it
RECIPE = REPO / "configs" / "gpu" / "transformer-de-en.yaml"
DATA = REPO / "data" / "multi30k"
RUN = Path("/tmp/nmt-gpu-bench-run")  # checkpoints stay off $OUT (few, small files return)


# --- sweep: training speed -----------------------------------------------------------------
def sweep(opts: argparse.Namespace) -> dict:
    """Target tokens/s of the recipe's model through the real training loop (batches
    built, pinned and copied ahead, updates queued, losses read every log_every)."""
    import shutil

    import torch

    rows = []
    for precision in opts.precisions:
        shutil.rmtree(RUN / f"sweep-{precision}", ignore_errors=True)
        if precision == "fp16" and not torch.cuda.is_available():
            rows.append({"precision": precision, "skipped": "fp16 needs CUDA"})
            continue
        trainer = _trainer(opts, precision)
        for batch_tokens in opts.batch_tokens:
            rows.append(_measure(trainer, batch_tokens, opts.warm_s, opts.measure_s))
            print(json.dumps(rows[-1]), flush=True)
        del trainer
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return {"device": _device_name(), "rows": rows}


def _trainer(opts: argparse.Namespace, precision: str):
    from nmt.config import load_config
    from nmt.training import Trainer

    sets = [f"train.precision={precision}", f"train.device={opts.device}", *opts.common]
    sets += ["train.schedule=constant", "train.valid_every=1000000", "train.max_minutes=0"]
    return Trainer(load_config(RECIPE, sets), RUN / f"sweep-{precision}")


def _measure(trainer, batch_tokens: int, warm_s: float, measure_s: float) -> dict:
    import torch

    trainer.cfg.train.batch_tokens = batch_tokens
    trainer.state.epoch = trainer.state.batch_in_epoch = 0
    _run_for(trainer, warm_s)  # kernels chosen, memory pools grown, fp16 scale settled
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    tokens, updates, seconds = _run_for(trainer, measure_s)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    return {
        "precision": trainer.cfg.train.precision,
        "batch_tokens": batch_tokens,
        "tokens_per_s": tokens / seconds,
        "updates_per_s": updates / seconds,
        "target_tokens_per_update": tokens / max(updates, 1),
        "updates": updates,
        "peak_gib": peak,
    }


def _run_for(trainer, seconds: float) -> tuple[int, int, float]:
    """Run the trainer's own loop for ``seconds`` of its clock (its time limit stops it,
    as in a real run); returns target tokens, updates and seconds (the device finished)."""
    import torch

    counted = {"tokens": 0, "updates": 0}
    after_step = trainer._after_step

    def counting(tokens: int) -> None:
        counted["tokens"] += tokens
        counted["updates"] += 1
        after_step(tokens)

    trainer._after_step = counting
    trainer.cfg.train.max_minutes = seconds / 60
    trainer.state.elapsed = 0.0
    start = time.perf_counter()
    trainer.clock.start(0.0)
    try:
        while not trainer._should_stop():  # reads the ledger at the stop: one wait
            trainer._run_epoch()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    finally:
        trainer._after_step = after_step
    return counted["tokens"], counted["updates"], time.perf_counter() - start


# --- train: time to BLEU ---------------------------------------------------------------------
def train(opts: argparse.Namespace) -> dict:
    """``nmt train`` on the recipe with a budget of ``--minutes``; BLEU by minute."""
    import shutil

    run = RUN / "recipe"
    shutil.rmtree(run, ignore_errors=True)
    sets = [f"train.max_minutes={opts.minutes}", f"train.device={opts.device}", *opts.common]
    sets += opts.set
    cmd = [sys.executable, "-m", "nmt", "train", str(RECIPE), "--out", str(run)]
    cmd += [a for s in sets for a in ("--set", s)]
    start = time.perf_counter()
    with open(Path(opts.out) / "train.log", "w", encoding="utf-8") as log:
        done = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    metrics = run / "metrics.jsonl"
    records = [json.loads(x) for x in metrics.open()] if metrics.exists() else []
    if metrics.exists():
        shutil.copy(metrics, Path(opts.out) / "metrics.jsonl")
    validations = [r for r in records if "valid_bleu" in r and "averaged" not in r]
    averaged = [r for r in records if "averaged" in r]
    logs = [r for r in records if "tokens_per_s" in r]
    return {
        "returncode": done.returncode,
        "budget_minutes": opts.minutes,
        "wall_s": wall,
        "updates": max((r.get("step", 0) for r in records), default=0),
        "validations": [[r["minutes"], r["step"], r["valid_bleu"]] for r in validations],
        "averaged_bleu": averaged[0]["valid_bleu"] if averaged else None,
        "tokens_per_s_logged": [round(r["tokens_per_s"]) for r in logs],
        "run": str(run),
    }


# --- translate: sentences per second -----------------------------------------------------------
def translate(opts: argparse.Namespace) -> dict:
    """Sentences/s translating test_2016_flickr with the trained recipe (bf16 on CUDA,
    wide batches), greedy and beam 5, and the test BLEU of each."""
    import sacrebleu
    import torch

    from nmt.inference.load import TranslateOptions, make_translator

    src = (DATA / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[: opts.sentences]
    ref = (DATA / "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()[: opts.sentences]
    precision = "bf16"
    rows = []
    for beam in (1, 5):
        translator = make_translator(
            RUN / "recipe",
            TranslateOptions(
                beam=beam,
                batch_size=opts.batch,
                precision=precision,
                device=opts.device,
            ),
        )
        translator.translate_lines(src[:64])  # warm-up
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        hyps = translator.translate_lines(src)
        seconds = time.perf_counter() - start
        bleu = sacrebleu.corpus_bleu(hyps, [ref]).score
        rows.append(
            {"beam": beam, "sentences_per_s": len(src) / seconds, "test_bleu": bleu, "n": len(src)}
        )
        print(json.dumps(rows[-1]), flush=True)
    return {"precision": precision, "batch": opts.batch, "rows": rows}


# --- table ----------------------------------------------------------------------------------
def table(opts: argparse.Namespace) -> str:
    """One Markdown table of every part that ran (a part that failed says so)."""
    out = Path(opts.out)
    parts = {p: _load(out / f"{p}.json") for p in ("sweep", "train", "translate")}
    lines = ["| figure | value |", "| --- | --- |"]
    sweep = parts["sweep"]
    lines.append(f"| device | {sweep.get('device', '?') if sweep else _device_name()} |")
    lines += _sweep_rows(sweep)
    lines += _train_rows(parts["train"])
    lines += _translate_rows(parts["translate"])
    lines.append(f"| test suite (CUDA visible) | {_tests_summary(out / 'pytest.log')} |")
    text = "\n".join(lines)
    (out / "table.md").write_text(text + "\n", encoding="utf-8")
    return text


def _sweep_rows(sweep: dict | None) -> list[str]:
    if not sweep:
        return ["| training tokens/s | did not run (see sweep.log) |"]
    rows = []
    for r in sweep["rows"]:
        if "skipped" in r:
            rows.append(f"| train tok/s, {r['precision']} | {r['skipped']} |")
            continue
        rows.append(
            f"| train tok/s, {r['precision']}, {r['batch_tokens']:,} batch tokens | "
            f"{r['tokens_per_s']:,.0f} target tok/s ({r['updates_per_s']:.1f} updates/s, "
            f"{r['target_tokens_per_update']:,.0f} tok/update, peak {r['peak_gib']:.1f} GiB) |"
        )
    return rows


def _train_rows(train: dict | None) -> list[str]:
    if not train or not train["validations"]:
        return ["| recipe, time to BLEU | did not run or did not validate (see train.log) |"]
    vals = train["validations"]
    best = max(vals, key=lambda v: v[2])
    rows = [
        f"| recipe, {train['budget_minutes']} min budget | {train['updates']} updates, "
        f"{train['wall_s']:.0f} s wall (setup and final validations included), "
        f"exit {train['returncode']} |",
        f"| recipe, best valid BLEU | {best[2]:.2f} at {best[0]:.2f} min (step {best[1]}); "
        f"average of last checkpoints {_fmt(train['averaged_bleu'])} |",
    ]
    for goal in (30, 35, 40):
        hit = next((v for v in vals if v[2] >= goal), None)
        when = f"{hit[0]:.2f} min (step {hit[1]})" if hit else "not reached"
        rows.append(f"| recipe, time to valid BLEU {goal} | {when} |")
    logged = train["tokens_per_s_logged"]
    if logged:
        rows.append(f"| recipe, logged tok/s (median) | {sorted(logged)[len(logged) // 2]:,} |")
    return rows


def _translate_rows(tr: dict | None) -> list[str]:
    if not tr:
        return ["| translation sentences/s | did not run (see translate.log) |"]
    return [
        f"| translate {'greedy' if r['beam'] == 1 else 'beam ' + str(r['beam'])}, "
        f"{tr['precision']}, batch {tr['batch']} | {r['sentences_per_s']:,.0f} sent/s, "
        f"test_2016 BLEU {r['test_bleu']:.2f} ({r['n']} sentences) |"
        for r in tr["rows"]
    ]


def _tests_summary(log: Path) -> str:
    if not log.exists():
        return "did not run"
    lines = [x for x in log.read_text(encoding="utf-8").splitlines() if x.strip()]
    summary = [x for x in lines if " passed" in x or " failed" in x or " error" in x]
    return summary[-1].strip("= ") if summary else f"no summary (last line: {lines[-1:]})"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _device_name() -> str:
    import torch

    from nmt.device import describe_device

    return describe_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["sweep", "train", "translate", "table"])
    parser.add_argument("--out", required=True, help="folder for <part>.json and logs")
    parser.add_argument("--dry", action="store_true", help="tiny CPU run of the same code")
    parser.add_argument("--minutes", type=float, default=2.5, help="training budget (train)")
    parser.add_argument("--set", action="append", default=[], help="extra config override")
    opts = parser.parse_args()
    opts.device = "cpu" if opts.dry else "cuda"
    opts.common = ["train.threads=1"] if opts.dry else []  # a shared CPU: no thread spinning
    opts.precisions = ["fp32", "bf16", "fp16"]
    opts.batch_tokens = [1024, 2048] if opts.dry else [8192, 16384, 32768]
    opts.warm_s, opts.measure_s = (1.0, 2.0) if opts.dry else (2.0, 5.0)
    opts.sentences, opts.batch = (64, 32) if opts.dry else (1000, 1000)
    if opts.dry:
        opts.minutes = min(opts.minutes, 0.3)
        opts.set += ["train.batch_tokens=2048", "train.valid_every=10", "train.log_every=5"]
        opts.set += ["train.valid_max_sentences=50", "train.keep_checkpoints=2"]
        opts.set += ["train.average_last=2", "train.warmup_steps=5"]
    Path(opts.out).mkdir(parents=True, exist_ok=True)
    if opts.part == "table":
        print(table(opts))
        return
    result = {"sweep": sweep, "train": train, "translate": translate}[opts.part](opts)
    (Path(opts.out) / f"{opts.part}.json").write_text(json.dumps(result, indent=2), "utf-8")


if __name__ == "__main__":
    main()
