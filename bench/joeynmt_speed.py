"""JoeyNMT 2.3's Transformer training throughput on Multi30k de->en, in `nmt`'s shape.

    python bench/joeynmt_speed.py --seconds 200 --json bench/results/joeynmt_speed.json

Installs JoeyNMT 2.3.0 into a scratch venv (``--venv``, made with
``--system-site-packages`` so that it reuses the torch already installed here; joeynmt
goes in with ``--no-deps``, then only the modules it imports for ``train`` that are
missing -- here subword-nmt and importlib-metadata, plus sentencepiece 0.2.1 in the venv
because 0.2.3 lacks the ``SetVocabulary`` JoeyNMT calls -- under a constraint that pins
torch to the installed version; nothing is installed when all is there), writes a JoeyNMT
config with the shape and batch of ``--config`` (default ``configs/transformer.yaml``),
runs ``python -m joeynmt train`` for ``--seconds`` of training (or ``--updates``), and
reports JoeyNMT's own "Tokens per Sec" log lines as JSON with the host's CPU model and
load average.

Same setup as ours:

- data: the plain-text splits of ``data.dir`` (train for training; val is loaded but
  never validated on, test is not loaded);
- subwords: our SentencePiece model (``tokenizer.model``, trained by
  :func:`nmt.data.store.training_data.prepare_tokenizer` if missing) through JoeyNMT's
  ``tokenizer_type: sentencepiece``, with a vocabulary file listing every piece of it, so
  the segmentation, the vocabulary size and the target token counts are ours;
- model: d_model, heads, ff_dim, encoder/decoder layers, dropout, pre/post norm, ReLU,
  scaled embeddings, source/target/output embeddings tied when ours are;
- batch: ``batch_type: token`` with ``batch_size = train.batch_tokens`` (times
  ``train.accumulate`` through ``batch_multiplier``); label smoothing, Adam betas,
  clipping, warmup + inverse-sqrt schedule (peak ``train.lr`` after ``warmup_steps``),
  ``max_length = data.max_len`` as in our config; the parameter count (in the JSON) comes
  out the same as our model's;
- precision: fp32. JoeyNMT has no bf16 autocast on CPU (its ``fp16`` is CUDA only), so
  compare with our fp32 figure (``bench/speed.py``'s fp32 row, or ``nmt train`` with
  ``--set train.precision=fp32``); our default precision (bf16) is reported beside it;
- threads: torch's default in both, or ``--threads N`` (OMP_NUM_THREADS for JoeyNMT;
  give ours ``--set train.threads=N``).

What JoeyNMT 2.3's "Tokens per Sec" counts (joeynmt/training.py, ``_log_scores``; and
joeynmt/batch.py): ``batch.ntokens`` is ``(trg[:, 1:] != pad).sum()``, the non-padding
target labels (target subwords + EOS, not BOS) -- the same as `nmt`'s
``Batch.n_tokens`` -- summed over the updates since the previous log line and divided by
the wall time since that line (``time.time()``, validation time subtracted). That wall
time covers JoeyNMT's whole loop: its data loading (SentencePiece runs on the fly in
``__getitem__``, twice per sentence and epoch, since the token batch sampler encodes too;
``num_workers: 0``, in the training process), collation, forward, loss, backward,
clipping, Adam, its per-batch accuracy and its TensorBoard writes. `bench/speed.py`
times only ``train_step`` on batches built beforehand; the ``tokens_per_s`` of
``nmt train``'s metrics.jsonl is the like-for-like full-loop figure. JoeyNMT's token
batches are not bucketed by length (random pairs, padded to the longest; ours sort by
length), so at the same padded batch_tokens its batches hold fewer real target tokens
(``joeynmt_batches_replayed`` in the JSON replays its batcher on our subword lengths: set
its target tokens per batch beside the ``tokens_per_update`` of our metrics.jsonl), and
that padding is part of the throughput it reaches.

Reported: the mean (and median) of the per-interval figures after the first interval
(which includes the first batches' allocation); the interval at an epoch start covers
only that epoch's part. Every interval has ``--log-every`` updates. Measure ours in the
same session on the same host: machines are noisy, figures from different runs are not
comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JOEY_VERSION = "2.3.0"
# Modules joeynmt 2.3 imports on the way to `train` (module -> PyPI name). Its other
# requirements (seaborn, plotly, pandas, datasets, pylint, yapf, flake8, pytest, ...)
# serve plotting of the hub interface, TSV/Hugging Face data or development only.
JOEY_IMPORTS = {
    "yaml": "pyyaml",
    "numpy": "numpy",
    # JoeyNMT 2.3 calls SentencePieceProcessor.SetVocabulary, which sentencepiece 0.2.3
    # no longer has: the venv then gets 0.2.1 of its own (the system's stays as it is)
    "sentencepiece": "sentencepiece==0.2.1",
    "subword_nmt": "subword-nmt",
    "sacrebleu": "sacrebleu",
    "matplotlib": "matplotlib",
    "importlib_metadata": "importlib-metadata",
    "packaging": "packaging",
    "tqdm": "tqdm",
    "tensorboard": "tensorboard",
}
LOG_LINE = re.compile(r"Epoch\s+(\d+), Step:\s+(\d+),.*Tokens per Sec:\s+([\d.]+)")
PARAMS_LINE = re.compile(r"Total params: (\d+)")

PROBE = """
import importlib.metadata as md, importlib.util as u, json, sys
try:
    joey = md.version("joeynmt")
except md.PackageNotFoundError:
    joey = None
import torch
missing = [m for m in sys.argv[1:] if u.find_spec(m) is None]
if "sentencepiece" not in missing:
    import sentencepiece as sp
    if not hasattr(sp.SentencePieceProcessor, "SetVocabulary"):
        missing.append("sentencepiece")  # joeynmt 2.3 calls it; 0.2.3 dropped it
print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                  "joeynmt": joey, "missing": missing}))
"""


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def probe(python: Path, env: dict | None = None) -> dict:
    out = subprocess.run(
        [str(python), "-c", PROBE, *JOEY_IMPORTS], capture_output=True, text=True, env=env
    )
    if out.returncode != 0:
        raise RuntimeError(f"{python} cannot import torch:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def pip(python: Path, args: list[str]) -> None:
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def ensure_joeynmt(venv: Path) -> dict:
    """The venv with joeynmt 2.3.0 and what it imports, torch untouched; its probe."""
    python = venv_python(venv)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    before = probe(python)
    torch_version = before["torch"]
    pin = venv / "torch-constraint.txt"
    pin.write_text(f"torch=={torch_version}\n")  # pip may not replace (or add) a torch
    if before["joeynmt"] != JOEY_VERSION:
        pip(python, ["--no-deps", f"joeynmt=={JOEY_VERSION}"])
    if before["missing"]:
        pip(python, ["-c", str(pin), *(JOEY_IMPORTS[m] for m in before["missing"])])
    after = probe(python)
    if after["torch"] != torch_version:
        raise RuntimeError(f"torch changed from {torch_version} to {after['torch']}")
    if after["joeynmt"] != JOEY_VERSION or after["missing"]:
        raise RuntimeError(f"the venv is incomplete: {after}")
    check = "import joeynmt.__main__, joeynmt.training"  # what `train` imports
    subprocess.run([str(python), "-c", check], check=True)
    return after


def load_ours(config: Path, overrides: list[str]):
    """Our config and tokenizer (trained if missing) and our model's parameter count."""
    os.chdir(REPO)  # the config's paths are relative to the repository
    from nmt.config import load_config
    from nmt.data.store.training_data import prepare_tokenizer
    from nmt.models import build_model

    cfg = load_config(config, overrides)
    if cfg.model.type != "transformer":
        raise SystemExit(f"{config}: model.type is {cfg.model.type}, not transformer")
    if cfg.data.directions:
        raise SystemExit(f"{config}: multilingual configs are not supported")
    tok = prepare_tokenizer(cfg)
    model = build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, tok.pad_id)
    params = sum(p.numel() for p in model.parameters())
    return cfg, tok, params


def data_prefix(cfg, split: str) -> Path:
    """``<dir>/<split>`` of a plain-text split (JoeyNMT appends ``.<lang>``)."""
    prefix = (REPO / cfg.data.dir / split).resolve()
    for lang in (cfg.data.src_lang, cfg.data.tgt_lang):
        path = Path(f"{prefix}.{lang}")
        if not path.is_file():
            raise SystemExit(
                f"{path} is missing: JoeyNMT reads plain text (nmt data multi30k writes "
                "data/multi30k; NMT_MULTI30K_MIRROR=/work/shared/data/multi30k uses a copy)"
            )
    return prefix


def write_vocab(sp, path: Path) -> int:
    """Every piece of a SentencePiece model, in id order: JoeyNMT's vocabulary puts its
    own <unk> <pad> <s> </s> first and drops them here, so the size stays the model's."""
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    path.write_text("".join(p + "\n" for p in pieces), encoding="utf-8")
    return len(pieces)


def joey_config(cfg, tok, work: Path, args: argparse.Namespace) -> dict:
    """A JoeyNMT 2.3 config with our model shape, batch, data and subwords."""
    from nmt.tokenizer import Tokenizer

    t, m = cfg.train, cfg.model.transformer
    src_model, tgt_model = Tokenizer.paths(REPO / cfg.tokenizer_prefix(), tok.joint)
    write_vocab(tok.src, work / "src_vocab.txt")
    write_vocab(tok.tgt, work / "trg_vocab.txt")

    def side(lang: str, model: Path, vocab: str) -> dict:
        return {
            "lang": lang,
            "level": "bpe",
            "lowercase": False,
            "normalize": False,
            "max_length": cfg.data.max_len,
            "voc_file": str(work / vocab),
            "tokenizer_type": "sentencepiece",
            "tokenizer_cfg": {"model_file": str(model.resolve()), "alpha": 0.0},
        }

    def stack(layers: int) -> dict:
        return {
            "type": "transformer",
            "num_layers": layers,
            "num_heads": m.heads,
            "embeddings": {"embedding_dim": m.d_model, "scale": True, "dropout": m.dropout},
            "hidden_size": m.d_model,
            "ff_size": m.ff_dim,
            "dropout": m.dropout,  # JoeyNMT's attention dropout is this one too
            "layer_norm": m.norm,
            "activation": "relu",
        }

    training = {
        "random_seed": t.seed,
        "optimizer": "adam",
        "adam_betas": list(t.betas),
        "weight_decay": t.weight_decay,
        "learning_rate": t.lr,
        "learning_rate_peak": t.lr,
        "learning_rate_warmup": t.warmup_steps,
        "learning_rate_min": t.min_lr,  # also JoeyNMT's stop criterion: keep it low
        "scheduling": "warmupinversesquareroot",
        "loss": "crossentropy",
        "label_smoothing": t.label_smoothing,
        "normalization": "tokens",
        "batch_type": "token",
        "batch_size": t.batch_tokens,
        "batch_multiplier": t.accumulate,
        "epochs": 100_000,
        "logging_freq": args.log_every,
        "validation_freq": args.log_every * 1_000_000,  # never validates
        "early_stopping_metric": "ppl",
        "keep_best_ckpts": 1,
        "shuffle": True,
        "overwrite": True,
        "num_workers": 0,
        "use_cuda": False,
        "fp16": False,
    }
    if t.clip_norm > 0:
        training["clip_grad_norm"] = t.clip_norm
    if args.updates:
        training["updates"] = args.updates
    return {
        "name": "joeynmt-speed",
        "joeynmt_version": JOEY_VERSION,
        "model_dir": str(work / "model"),
        "use_cuda": False,
        "fp16": False,
        "random_seed": t.seed,
        "data": {
            "train": str(data_prefix(cfg, cfg.data.train)),
            "dev": str(data_prefix(cfg, cfg.data.valid)),
            "dataset_type": "plain",
            "src": side(cfg.data.src_lang, src_model, "src_vocab.txt"),
            "trg": side(cfg.data.tgt_lang, tgt_model, "trg_vocab.txt"),
        },
        "testing": {"beam_size": 1, "batch_size": 64, "eval_metrics": ["bleu"]},
        "training": training,
        "model": {
            "initializer": "xavier_uniform",
            "embed_initializer": "xavier_uniform",
            "bias_initializer": "zeros",
            "tied_embeddings": m.tie_embeddings,
            "tied_softmax": m.tie_embeddings,
            "encoder": stack(m.encoder_layers),
            "decoder": stack(m.decoder_layers),
        },
    }


def run_joey(python: Path, config: Path, model_dir: Path, args: argparse.Namespace) -> dict:
    """``joeynmt train`` for ``--seconds`` after its first epoch begins (SIGINT, which it
    handles: it saves a checkpoint and ends), or until ``--updates`` stop it."""
    shutil.rmtree(model_dir, ignore_errors=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    out_path = config.parent / "joeynmt.out"
    log = model_dir / "train.log"
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with out_path.open("w") as out:
        cmd = [str(python), "-m", "joeynmt", "train", str(config), "--skip-test"]
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        launched = time.monotonic()
        started = None  # when JoeyNMT logged "EPOCH 1": the training clock starts
        interrupted = False
        while proc.poll() is None:
            time.sleep(0.2)
            now = time.monotonic()
            if started is None:
                if log.is_file() and "EPOCH 1" in log.read_text(errors="replace"):
                    started = now
                elif now - launched > args.startup_timeout:
                    proc.kill()
                    raise RuntimeError(f"JoeyNMT did not start training: see {out_path}")
            elif now - started >= args.seconds:
                proc.send_signal(signal.SIGINT)
                interrupted = True
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        ended = time.monotonic()
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = log.read_text(errors="replace") if log.is_file() else ""
    if started is None or (proc.returncode != 0 and not interrupted):
        tail = out_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"joeynmt train failed (exit {proc.returncode}):\n{tail}")
    for ckpt in model_dir.glob("*.ckpt"):
        ckpt.unlink()  # the checkpoint saved on the way out (tens of MiB): not needed
    params = PARAMS_LINE.search(text)
    return {
        "log": text,
        "train_seconds": ended - started,
        "startup_seconds": started - launched,
        "cpu_seconds": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "params": int(params.group(1)) if params else None,
        "stopped_by": "seconds (SIGINT)" if interrupted else "updates",
        "out": str(out_path),
    }


def joey_batches(cfg, tok, seed: int = 1) -> dict:
    """Real and padded tokens of JoeyNMT's token batches over one shuffled epoch of the
    training split, replaying its ``TokenBatchSampler`` on our subword lengths: pairs in
    random order, a batch closes once ``max(len(src) + 1, len(trg) + 1) x pairs`` reaches
    ``batch_size``; pairs over ``max_length`` on either side are dropped."""
    import numpy as np

    prefix = data_prefix(cfg, cfg.data.train)
    src = Path(f"{prefix}.{cfg.data.src_lang}").read_text(encoding="utf-8").splitlines()
    tgt = Path(f"{prefix}.{cfg.data.tgt_lang}").read_text(encoding="utf-8").splitlines()
    src_len = [len(ids) for ids in tok.src.encode(src)]
    tgt_len = [len(ids) for ids in tok.tgt.encode(tgt)]
    limit = cfg.data.max_len
    keep = [i for i in range(len(src)) if src_len[i] <= limit and tgt_len[i] <= limit]
    real, padded, batch, longest = [], [], [], 0
    for i in np.random.default_rng(seed).permutation(keep):
        batch.append(i)
        longest = max(longest, src_len[i] + 1, tgt_len[i] + 1)
        if longest * len(batch) >= cfg.train.batch_tokens:
            real.append(sum(tgt_len[j] + 1 for j in batch))
            padded.append(longest * len(batch))
            batch, longest = [], 0
    return {
        "target_tokens_per_batch": statistics.mean(real),
        "padded_tokens_per_batch": statistics.mean(padded),
        "batches_per_epoch": len(real) + bool(batch),
    }


def intervals(log: str) -> list[dict]:
    return [
        {"epoch": int(e), "step": int(s), "tokens_per_s": float(r)}
        for e, s, r in LOG_LINE.findall(log)
    ]


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=REPO / "configs" / "transformer.yaml")
    p.add_argument("--set", action="append", default=[], help="override of our config")
    p.add_argument("--seconds", type=float, default=200.0, help="training wall seconds")
    p.add_argument("--updates", type=int, default=0, help="stop after N updates; 0 = off")
    p.add_argument("--log-every", type=int, default=5, help="JoeyNMT logging_freq")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    p.add_argument("--venv", type=Path, default=Path("/tmp/joey-venv"))
    p.add_argument("--work", type=Path, default=Path("/tmp/joey-bench"))
    p.add_argument("--startup-timeout", type=float, default=600.0)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    config = args.config.resolve()  # load_ours moves to the repository: paths first
    json_path = args.json.resolve() if args.json else None
    args.venv, args.work = args.venv.absolute(), args.work.resolve()

    venv = ensure_joeynmt(args.venv)
    cfg, tok, our_params = load_ours(config, args.set)
    args.work.mkdir(parents=True, exist_ok=True)
    joey_cfg = joey_config(cfg, tok, args.work, args)
    import yaml

    joey_yaml = args.work / "joeynmt.yaml"
    joey_yaml.write_text(yaml.safe_dump(joey_cfg, sort_keys=False))

    load_before = os.getloadavg()
    run = run_joey(venv_python(args.venv), joey_yaml, Path(joey_cfg["model_dir"]), args)
    load_after = os.getloadavg()
    rows = intervals(run.pop("log"))
    if not rows:
        raise SystemExit("no 'Tokens per Sec' line: more --seconds or a smaller --log-every")
    kept = rows[1:] or rows  # the first interval includes the first batches' allocation
    rates = [r["tokens_per_s"] for r in kept]
    m, t = cfg.model.transformer, cfg.train
    replay = joey_batches(cfg, tok)
    result = {
        "tool": f"joeynmt {JOEY_VERSION}",
        "measures": "non-padding target tokens (subwords + EOS) per wall second of "
        "JoeyNMT's training loop, from its 'Tokens per Sec' log lines",
        "tokens_per_s_mean": statistics.mean(rates),
        "tokens_per_s_median": statistics.median(rates),
        "intervals_used": len(kept),
        "first_interval_skipped": len(rows) > 1,
        "log_every": args.log_every,
        "steps": rows[-1]["step"],
        "epochs_seen": rows[-1]["epoch"],
        "precision": "fp32",
        "nmt_default_precision": t.precision,
        "shape": {
            "d_model": m.d_model,
            "heads": m.heads,
            "ff_dim": m.ff_dim,
            "encoder_layers": m.encoder_layers,
            "decoder_layers": m.decoder_layers,
            "dropout": m.dropout,
            "attention_dropout_joeynmt": m.dropout,
            "attention_dropout_nmt": m.attention_dropout,
            "norm": m.norm,
            "tied_embeddings": m.tie_embeddings,
            "vocab": [tok.src_vocab_size, tok.tgt_vocab_size],
        },
        "params": {"joeynmt": run.pop("params"), "nmt": our_params},
        "batch_tokens": t.batch_tokens,
        "accumulate": t.accumulate,
        "joeynmt_batches_replayed": replay,
        "torch": venv["torch"],
        "threads": args.threads or venv["threads"],
        "host": {
            "cpu_model": cpu_model(),
            "cpus": os.cpu_count(),
            "loadavg_before": list(load_before),
            "loadavg_after": list(load_after),
        },
        "config": str(config),
        "overrides": args.set,
        "joeynmt_config": str(joey_yaml),
        "joeynmt_log": joey_cfg["model_dir"] + "/train.log",
        **run,
        "intervals": rows,
    }
    print(
        f"joeynmt {JOEY_VERSION} fp32: {result['tokens_per_s_mean']:,.0f} target tok/s "
        f"(median {result['tokens_per_s_median']:,.0f}; {len(kept)} intervals of "
        f"{args.log_every} updates, {result['steps']} updates in "
        f"{result['train_seconds']:.0f} s) on {result['host']['cpu_model']}, "
        f"{result['threads']} threads, load {load_before[0]:.2f} -> {load_after[0]:.2f}"
    )
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
