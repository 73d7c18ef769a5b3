"""From a path on disk to a ready :class:`Translator`: what every inference job starts with.

``nmt translate``, ``evaluate``, ``score``, ``serve``, ``compare`` and the bench scripts
all load models here, so a run directory, a checkpoint, several of them (an ensemble) or
an ``nmt export`` directory mean the same everywhere. The command-line search settings
travel as one :class:`TranslateOptions` from the CLI to the search.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from nmt.config import Config, SearchConfig
from nmt.device import resolve_device
from nmt.errors import UsageError
from nmt.inference.ct2 import is_export, make_ct2_translator
from nmt.inference.ensemble import load_models
from nmt.inference.quantize import quantize
from nmt.inference.search import Sampling
from nmt.inference.translator import Translator
from nmt.models.base import Seq2Seq
from nmt.precision import check_precision
from nmt.tokenizer import Tokenizer


@dataclass(frozen=True)
class TranslateOptions:
    """How to load a model and search with it; ``None`` keeps the model config's value."""

    beam: int | None = None  # 1 = greedy
    nbest: int = 1  # hypotheses per line (at most the beam)
    length_penalty: float | None = None  # alpha of the GNMT length penalty
    batch_size: int | None = None  # sentences per search batch
    precision: str = "fp32"  # fp32 | bf16 | fp16 (CUDA only)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    quantization: str = "none"  # none | int8 (dynamic quantization, CPU)
    sampling: Sampling | None = None  # draw outputs at random instead of searching
    seed: int | None = None  # of the sampling draws
    chunk_lines: int = 10_000  # lines read, sorted by length and translated together
    tgt_lang: str | None = None  # target language: required by a multilingual model

    def search_changes(self) -> dict:
        """The :class:`SearchConfig` fields these options set."""
        changes = {"beam": self.beam, "length_penalty": self.length_penalty}
        changes["batch_size"] = self.batch_size
        return {k: v for k, v in changes.items() if v is not None} | {"nbest": self.nbest}


def load_for_inference(
    model_path: Path | list[Path], device: str, precision: str, quantization: str
) -> tuple[Seq2Seq, Tokenizer, Config, torch.device]:
    """Model (several paths: an ensemble), tokenizer, config and device, checked and ready."""
    if quantization != "none" and precision != "fp32":  # int8 kernels take fp32 activations
        raise UsageError(f"--quantize {quantization} runs in fp32: drop --precision {precision}")
    dev = resolve_device(device)
    check_precision(precision, dev)
    model, tok, cfg = load_models(model_path, dev)
    return quantize(model, quantization), tok, cfg, dev


def make_translator(
    model_path: Path | list[Path],
    options: TranslateOptions | None = None,
    search: SearchConfig | None = None,
) -> Translator:
    """Load a checkpoint (several: an ensemble) or an export and apply ``options`` over
    ``search`` (default: the model config's search section); translate into
    ``options.tgt_lang`` (checked: a multilingual model needs one of its languages, a
    bilingual one takes only its own)."""
    o = options or TranslateOptions()
    return open_translator(model_path, o, search).for_target(o.tgt_lang)


def open_translator(
    model_path: Path | list[Path], options: TranslateOptions, search: SearchConfig | None = None
) -> Translator:
    """:func:`make_translator` before a target language is chosen: a multilingual model's
    translator then has no tag yet (``nmt serve`` picks one per request)."""
    o = options
    if o.chunk_lines < 1:
        raise UsageError(f"--chunk-lines must be at least 1, got {o.chunk_lines}")
    if o.seed is not None and not 0 <= o.seed < 2**63:  # what a torch generator takes
        raise UsageError(f"--seed must be between 0 and 2**63 - 1, got {o.seed}")
    if o.sampling is not None and o.beam is not None:
        raise UsageError("--sample draws the output at random: it does not combine with --beam")
    if is_export(model_path):  # an `nmt export` directory: the search runs in CTranslate2
        if o.sampling is not None:
            raise UsageError("--sample needs the PyTorch model (a run or checkpoint)")
        translator = make_ct2_translator(model_path, o.precision, o.device, o.quantization)
        translator.search = dataclasses.replace(search or translator.search, **o.search_changes())
        check_search(translator.search)
        translator.chunk_lines = o.chunk_lines
        return translator
    model, tok, cfg, dev = load_for_inference(model_path, o.device, o.precision, o.quantization)
    settings = dataclasses.replace(search or cfg.search, **o.search_changes())
    check_search(settings, o.sampling)
    multilingual = bool(cfg.data.directions)  # its source language is any of several
    return Translator(
        model, tok, settings, dev, o.precision, chunk_lines=o.chunk_lines,
        sampling=o.sampling, seed=o.seed, src_lang="" if multilingual else cfg.data.src_lang,
        tgt_lang="" if multilingual else cfg.data.tgt_lang,
    )  # fmt: skip


def check_search(s: SearchConfig, sampling: Sampling | None = None) -> None:
    """Refuse search settings no search can run, naming the flag that sets each."""
    if s.beam < 1:
        raise UsageError(f"--beam must be at least 1, got {s.beam}")
    if sampling is None and (s.nbest < 1 or s.nbest > s.beam):
        raise UsageError(f"--nbest must be between 1 and the beam size ({s.beam}), got {s.nbest}")
    if s.nbest < 1:
        raise UsageError(f"--nbest must be at least 1, got {s.nbest}")
    if s.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {s.batch_size}")
    if not s.length_penalty >= 0:  # NaN too
        raise UsageError(f"--length-penalty must not be negative or NaN, got {s.length_penalty}")


def parse_sampling(text: str | None, temperature: float | None) -> Sampling | None:
    """``--sample topk:K`` / ``topp:P`` with ``--temperature`` into a :class:`Sampling`."""
    if text is None:
        if temperature is not None:
            raise UsageError("--temperature applies to sampling: give --sample too")
        return None
    method, _, value = text.partition(":")
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"--sample must be topk:K or topp:P, not '{text}'") from None
    return Sampling(method, number, 1.0 if temperature is None else temperature)
