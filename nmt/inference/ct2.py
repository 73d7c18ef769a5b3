"""Translating with an exported CTranslate2 model directory (see :mod:`nmt.artifacts.ctranslate2`).

:class:`CT2Translator` is a :class:`~nmt.inference.translator.Translator` whose search runs in
CTranslate2: reading input in chunks, length-sorted batches, empty lines, truncation of
over-long sources and detokenization are the ones of the PyTorch path, so the guarantee
is the same: N lines in, N lines out, in order.

Search settings and how CTranslate2 honours them:

- ``beam``, ``nbest``: ``beam_size``, ``num_hypotheses``;
- maximum output length ``a * source_length + b`` (per sentence, as
  :class:`~nmt.inference.search.SearchLimits` computes it): CTranslate2 takes one
  ``max_decoding_length`` per call, so sentences run in buckets of similar bounds and
  the rare one that outgrows its own bound is searched again alone with it (see
  :meth:`CT2Translator._search_ids`);
- ``length_penalty`` alpha: CTranslate2 ranks finished hypotheses by
  ``log_prob / length ** alpha`` where ``nmt`` uses Wu et al.'s ``((5 + length) / 6) **
  alpha``, so beam search may rank some candidates differently; greedy search is the same
  search in both (and gives the same output on a trained model: tests/test_export.py).
"""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nmt.artifacts.bounds import MAX_POSITIONS
from nmt.artifacts.ctranslate2 import EXPORT_FORMAT, META_FILE, is_exported_dir, vocabulary
from nmt.config import Config, ConfigError, from_dict
from nmt.data.batch import pad_sequences
from nmt.errors import UsageError
from nmt.inference.guide import Guide
from nmt.inference.search import Hypothesis
from nmt.inference.translator import AttentionMap, Translator
from nmt.tokenizer import Tokenizer, TokenizerError

log = logging.getLogger("nmt.ct2")

# CTranslate2's beam search depends on its max_decoding_length (at the limit it keeps the
# unfinished hypotheses), so sentences are searched in buckets of equal limits (16 output
# tokens wide: test_2016_flickr lands in about 5 buckets).
BOUND_BUCKET = 16
MAX_META_BYTES = 1 << 20  # nmt-export.json
MAX_TOKENIZER_BYTES = 64 << 20  # a SentencePiece model (a few MB at most)


class ExportedModelError(UsageError):
    """An exported directory that cannot be loaded; the message says why."""


@dataclass
class ExportedModel:
    """A CTranslate2 translator over an exported directory, and what it was exported with."""

    engine: Any  # ctranslate2.Translator
    path: Path
    max_positions: int
    compute_type: str


@dataclass
class CT2Translator(Translator):
    """The :class:`Translator` interface over :class:`ExportedModel` (``model``)."""

    def translate_chunk(
        self, lines: list[str], guides: list[Guide] | None = None
    ) -> list[list[Hypothesis]]:
        """As :meth:`Translator.translate_chunk`, but the whole chunk goes to CTranslate2
        at once, so that its threads (``inter_threads``) search several batches in
        parallel; CTranslate2 gets more from its cores that way than by splitting the
        matrix work of one small batch."""
        results = [[Hypothesis([], 0.0, 0.0)] for _ in lines]
        todo = [i for i, line in enumerate(lines) if line.strip()]
        todo_guides = [guides[i] for i in todo] if guides is not None else None
        hyps_todo = self._search_ids(self._encode([lines[i] for i in todo]), todo_guides)
        for i, hyps in zip(todo, hyps_todo):
            results[i] = hyps
        return results

    def _search_ids(
        self, ids: list[list[int]], guides: list[Guide] | None = None
    ) -> list[list[Hypothesis]]:
        """Hypotheses for EOS-terminated source ids, each within its length bound.

        A sentence is searched together with others whose bound falls in the same
        bucket of :data:`BOUND_BUCKET` tokens, with the bucket's top as the limit, and
        alone with its own bound if its output outgrows that. Its result thus depends on
        the sentence alone, not on the batch it came in: a server that batches
        concurrent requests answers what file translation writes.

        ``guides``: target prefixes become CTranslate2's ``target_prefix`` (the bound grows
        by the prefix); constraints are refused (constrained search is PyTorch's).
        """
        prefixes = _prefixes(guides, len(ids))
        bounds = [n + len(p) for n, p in zip(self._max_tokens(ids), prefixes)]
        results: list[list[Hypothesis]] = [[Hypothesis([], 0.0, 0.0)] for _ in ids]
        pending = [
            (
                members,
                self._submit([ids[i] for i in members], limit, [prefixes[i] for i in members]),
            )
            for limit, members in self._batches(ids, bounds)
        ]
        for members, answers in pending:
            for i, answer in zip(members, answers):
                results[i] = self._hypotheses(answer.result())
        for i, hyps in enumerate(results):
            if any(len(h.tokens) > bounds[i] for h in hyps):  # outgrew its own bound
                answer = self._submit([ids[i]], bounds[i], [prefixes[i]])[0]
                results[i] = self._hypotheses(answer.result())
        return results

    def _batches(self, ids: list[list[int]], bounds: list[int]) -> list[tuple[int, list[int]]]:
        """(limit, sentence indices): length-sorted batches of sentences of one bucket."""
        buckets: dict[int, list[int]] = {}
        for i, bound in enumerate(bounds):
            if bound > 0:  # a bound of 0 tokens leaves the empty hypothesis
                buckets.setdefault(-(-bound // BOUND_BUCKET) * BOUND_BUCKET, []).append(i)
        size, batches = self.search.batch_size, []
        for limit, members in buckets.items():
            members.sort(key=lambda i: len(ids[i]))
            batches += [(limit, members[k : k + size]) for k in range(0, len(members), size)]
        return batches

    def _max_tokens(self, ids: list[list[int]]) -> list[int]:
        """Most output tokens per sentence: the bound of :class:`SearchLimits` minus EOS."""
        mask = pad_sequences(ids, self.tok.pad_id) != self.tok.pad_id  # (B, S)
        return [int(n) - 1 for n in self.limits.max_lengths(mask)]

    def _submit(
        self, ids: list[list[int]], max_tokens: int, prefixes: list[tuple[int, ...]]
    ) -> list[Any]:
        """Queue one batch in CTranslate2; each answer's ``result()`` waits for it."""
        s = self.search
        target_prefix = None
        if any(prefixes):
            target_prefix = [[self.tok.tgt.id_to_piece(i) for i in p] or None for p in prefixes]
        return self.model.engine.translate_batch(
            [self._pieces(x) for x in ids],
            target_prefix=target_prefix,
            beam_size=s.beam,
            num_hypotheses=s.nbest,
            length_penalty=s.length_penalty,
            max_decoding_length=max_tokens,
            max_input_length=0,  # sources are already cut to the model's positions
            return_scores=True,
            asynchronous=True,
        )

    def _pieces(self, ids: list[int]) -> list[str]:
        """Source pieces without the final </s>, which CTranslate2 adds (add_source_eos)."""
        return [self.tok.src.id_to_piece(i) for i in ids[:-1]]

    def _hypotheses(self, result: Any) -> list[Hypothesis]:
        """Pieces back to our ids; CTranslate2 reports only the ranking score (both fields)."""
        to_id = self.tok.tgt.piece_to_id
        return [
            Hypothesis([to_id(p) for p in pieces], score, score)
            for pieces, score in zip(result.hypotheses, result.scores)
        ]

    def attention(self, line: str) -> AttentionMap:
        """Greedy translation of one sentence with its head-averaged last-layer attention.

        CTranslate2 reports one row per output token (none for </s>) over the source
        pieces without the </s> it appended.
        """
        ids = self._encode([line])[0]
        limit = self._max_tokens([ids])[0]
        result = self.model.engine.translate_batch(
            [self._pieces(ids)],
            beam_size=1,
            max_decoding_length=max(limit, 1),
            max_input_length=0,
            return_attention=True,
            return_scores=True,
        )[0]
        src_pieces, tgt_pieces = self._pieces(ids), list(result.hypotheses[0])
        hyp = self._hypotheses(result)[0]
        weights = [list(row[: len(src_pieces)]) for row in result.attention[0]]
        return AttentionMap(src_pieces, tgt_pieces, weights, self.detok(hyp))


def _prefixes(guides: list[Guide] | None, count: int) -> list[tuple[int, ...]]:
    """Each sentence's target prefix; constraints are refused with a one-line error."""
    if guides is None:
        return [()] * count
    if any(g.constraints for g in guides):
        raise UsageError(
            "--glossary needs constrained search, which runs on the PyTorch model: "
            "translate with the run directory or checkpoint instead of the export"
        )
    return [g.prefix for g in guides]


# --- loading --------------------------------------------------------------------------------


def read_metadata(path: Path) -> dict:
    """The ``nmt-export.json`` of an exported directory, checked for its format and types."""
    try:
        meta = json.loads(read_inside(path, META_FILE, MAX_META_BYTES))
    except json.JSONDecodeError as e:
        raise ExportedModelError(f"{path / META_FILE} is not readable: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise ExportedModelError(f"{path} is not an nmt CTranslate2 export ('{EXPORT_FORMAT}')")
    files, positions = meta.get("tokenizer"), meta.get("max_positions")
    if not (
        isinstance(files, dict)
        and isinstance(files.get("joint"), bool)
        and all(
            isinstance(files.get(k), str) for k in ("src",) + (() if files["joint"] else ("tgt",))
        )
        and isinstance(meta.get("config"), dict)
        and type(positions) is int
        and 0 < positions <= MAX_POSITIONS
    ):
        raise ExportedModelError(
            f"{path}: damaged {META_FILE} (tokenizer, config or max_positions of the wrong type)"
        )
    return meta


def read_inside(folder: Path, name: str, limit: int) -> bytes:
    """The bytes of the plain file ``name`` inside ``folder``, at most ``limit`` of them.

    Names come from a file anyone may have written: one that leads out of the folder
    (``../x``, an absolute path, a symbolic link), a device (``/dev/zero``) or a file larger
    than ``limit`` is refused, so loading an export never reads anything else.
    """
    root = folder.resolve()
    target = (folder / name).resolve()
    if target.parent != root and root not in target.parents:
        raise ExportedModelError(f"{folder}: '{name}' is not a file inside the export")
    try:
        with open(target, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ExportedModelError(f"{folder}: '{name}' is not a plain file")
            data = f.read(limit + 1)
    except OSError as e:
        raise ExportedModelError(f"{folder}: cannot read '{name}' ({e.strerror or e})") from e
    if len(data) > limit:
        raise ExportedModelError(f"{folder}: '{name}' is larger than {limit >> 20} MiB")
    return data


def _load_tokenizer(path: Path, meta: dict) -> Tokenizer:
    files = meta["tokenizer"]
    src = read_inside(path, files["src"], MAX_TOKENIZER_BYTES)
    tgt = None if files["joint"] else read_inside(path, files["tgt"], MAX_TOKENIZER_BYTES)
    try:
        return Tokenizer(src, tgt)
    except TokenizerError as e:
        raise ExportedModelError(f"{path}: cannot load the tokenizer ({e})") from e


def _check_vocabulary(path: Path, tok: Tokenizer) -> None:
    """CTranslate2's vocabulary must list our pieces at our ids (a mixed-up folder fails)."""
    name = "shared_vocabulary.json"  # CTranslate2 writes one file when both agree
    if not (path / name).is_file():
        name = "source_vocabulary.json"
    try:
        stored = json.loads(read_inside(path, name, MAX_TOKENIZER_BYTES))
    except (UnicodeError, json.JSONDecodeError) as e:
        raise ExportedModelError(f"{path}: cannot read the vocabulary ({e})") from e
    if stored != vocabulary(tok.src):
        raise ExportedModelError(f"{path}: the vocabulary does not match the tokenizer")


def ct2_device(device: str) -> tuple[str, int]:
    """``auto``/``cpu``/``cuda``/``cuda:N`` as CTranslate2's (device, index)."""
    import ctranslate2

    if device == "auto":
        return ("cuda", 0) if ctranslate2.get_cuda_device_count() > 0 else ("cpu", 0)
    name, _, index = device.partition(":")
    if name not in ("cpu", "cuda") or (index and not index.isdigit()):
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, not '{device}'")
    if name == "cuda" and ctranslate2.get_cuda_device_count() == 0:
        raise ConfigError("--device cuda: CTranslate2 sees no CUDA device")
    return name, int(index or 0)


def compute_type(precision: str, quantization: str, device: str) -> str:
    """CTranslate2's compute type for the translate flags (default: as exported)."""
    import ctranslate2

    wanted = {
        ("fp32", "none"): "default",
        ("fp32", "int8"): "int8_float32",
        ("bf16", "none"): "bfloat16",
        ("bf16", "int8"): "int8_bfloat16",
        ("fp16", "none"): "float16",
        ("fp16", "int8"): "int8_float16",
    }.get((precision, quantization))
    if wanted is None:
        raise ConfigError(f"unknown --precision {precision} / --quantize {quantization}")
    supported = ctranslate2.get_supported_compute_types(device)
    if wanted != "default" and wanted not in supported:
        raise ConfigError(
            f"CTranslate2 cannot compute in {wanted} on this {device} "
            f"(supported: {', '.join(sorted(supported))})"
        )
    return wanted


def load_exported(
    path: Path, device: str = "auto", precision: str = "fp32", quantization: str = "none"
) -> tuple[ExportedModel, Tokenizer, Config]:
    """Open an exported directory: the CTranslate2 translator, tokenizer, and the config
    of the exported run (its search defaults and languages)."""
    import ctranslate2

    meta = read_metadata(path)
    tok = _load_tokenizer(path, meta)
    _check_vocabulary(path, tok)
    try:
        cfg = from_dict(meta["config"])
    except (KeyError, ConfigError) as e:
        raise ExportedModelError(f"{path}: damaged {META_FILE} ({e})") from e
    name, index = ct2_device(device)
    ctype = compute_type(precision, quantization, name)
    threads = torch.get_num_threads() if name == "cpu" else 1  # batches run in parallel
    try:
        engine = ctranslate2.Translator(
            str(path),
            device=name,
            device_index=index,
            compute_type=ctype,
            inter_threads=threads,
            intra_threads=1,
        )
    except (RuntimeError, ValueError) as e:
        raise ExportedModelError(f"{path}: CTranslate2 cannot load the model ({e})") from e
    actual = getattr(engine, "compute_type", ctype)
    log.info("CTranslate2 model %s on %s, computing in %s", path, name, actual)
    return ExportedModel(engine, path, meta["max_positions"], actual), tok, cfg


def make_ct2_translator(
    model_path: Path | list[Path],
    precision: str = "fp32",
    device: str = "auto",
    quantization: str = "none",
) -> CT2Translator:
    """The translator of ``nmt translate DIR``, with the export's search settings."""
    paths = model_path if isinstance(model_path, list) else [model_path]
    if len(paths) != 1:
        raise ConfigError("an exported model cannot be part of an ensemble: give one MODEL")
    model, tok, cfg = load_exported(Path(paths[0]), device, precision, quantization)
    target = "" if cfg.data.directions else cfg.data.tgt_lang  # multilingual: chosen later
    return CT2Translator(model, tok, cfg.search, tgt_lang=target)


def is_export(model_path: Path | list[Path]) -> bool:
    """True when the model path (or any of several) is an exported directory."""
    paths = model_path if isinstance(model_path, list) else [model_path]
    return any(is_exported_dir(Path(p)) for p in paths)
