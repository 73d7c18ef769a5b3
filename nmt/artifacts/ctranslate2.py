"""Export a trained Transformer to a CTranslate2 model directory.

CTranslate2 (OpenNMT's C++ inference engine) runs Transformer encoder-decoders with
int8/bf16 matrix work and batched beam search without Python in the loop. Its own
model-spec API (``ctranslate2.specs.TransformerSpec``) describes the network; this
module fills that spec with our weights, registers vocabularies that give every
SentencePiece piece its own id, validates, optionally quantizes, and saves:

    DIR/model.bin, config.json, shared_vocabulary.json   CTranslate2's files
    DIR/tokenizer.model (or tokenizer.src/.tgt.model)     the SentencePiece model(s)
    DIR/nmt-export.json                                   what nmt needs to translate

How our Transformer (:mod:`nmt.models.transformer`) maps onto the spec:

- embeddings scaled by sqrt(d_model) (Vaswani et al. 2017, sec. 3.4): ``scale_embeddings``;
- sinusoidal positions (sec. 3.5): our own table is written as ``position_encodings``, so
  CTranslate2 adds exactly the vectors we trained with (position 0 = first token);
- pre-norm or post-norm: ``pre_norm``; pre-norm stacks end in a LayerNorm, as ours do;
- LayerNorm epsilon: read from the model and written to ``config.layer_norm_epsilon``;
- fused Q/K/V (self-attention) and K/V (cross-attention) projections: the spec's
  ``linear[0]`` / ``linear[1]`` hold them in the same [q; k; v] and [k; v] order;
- tied embeddings: the same tensor for both embeddings and the output projection
  (``optimize`` stores it once);
- source side: our encoder reads ``pieces + </s>``: ``add_source_eos``; the decoder
  starts from ``<s>`` (``decoder_start_token``) and stops at ``</s>``; the token strings
  are read from the tokenizer, and the vocabulary lists every piece at its id.
- cross-attention returned for alignments: the last decoder layer, averaged over all
  heads, like ``nmt translate --attention-plot``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

import nmt
from nmt.artifacts.checkpoint import load_checkpoint, resolve_model_path
from nmt.config import Config, to_dict
from nmt.errors import UsageError
from nmt.models.transformer import Transformer
from nmt.tokenizer import Tokenizer

log = logging.getLogger("nmt.artifacts.ctranslate2")

META_FILE = "nmt-export.json"
EXPORT_FORMAT = "nmt-ctranslate2-1"
EXPORT_QUANTIZATIONS = ("float32", "int8", "int8_bfloat16", "bfloat16")


class ExportError(UsageError):
    """A model or an output directory that cannot be exported; the message says why."""


def export_ctranslate2(model_path: Path, out: Path, quantization: str = "float32") -> Path:
    """Write a CTranslate2 model directory for the Transformer at ``model_path``."""
    if quantization not in EXPORT_QUANTIZATIONS:
        raise ExportError(
            f"--quantization must be one of {', '.join(EXPORT_QUANTIZATIONS)}, not '{quantization}'"
        )
    _check_out_dir(out)
    source = resolve_model_path(model_path)
    model, tok, cfg, meta = load_checkpoint(source, "cpu")
    check_exportable(cfg)
    assert isinstance(model, Transformer)
    spec = build_spec(model, cfg, tok)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        staging = Path(tmp) / "model"
        staging.mkdir()
        _save_spec(spec, staging, quantization)
        tok_files = _save_tokenizer(tok, staging)
        write_metadata(staging, cfg, tok, tok_files, quantization, source, meta)
        if out.exists():
            out.rmdir()  # empty (checked above): replaced by the finished directory
        staging.replace(out)
    log.info("exported %s to %s (CTranslate2, %s)", source, out, quantization)
    _warn_if_unsupported_here(quantization)
    return out


def _warn_if_unsupported_here(quantization: str) -> None:
    """bf16 weights are for machines that compute in bf16; say when this CPU does not."""
    import ctranslate2

    supported = ctranslate2.get_supported_compute_types("cpu")
    if quantization not in supported:
        log.warning(
            "CTranslate2 computes %s on GPUs and some CPUs, not on this CPU (%s): here the "
            "model will run in a type it supports",
            quantization,
            ", ".join(sorted(supported)),
        )


def _check_out_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} already exists and is not an empty directory")
    out.parent.mkdir(parents=True, exist_ok=True)


def check_exportable(cfg: Config) -> None:
    """Refuse, in one line, what CTranslate2 cannot run exactly.

    Every Transformer the config allows maps exactly (pre/post-norm, tied or not, any
    width, heads, depth and max_positions: the positions table is written, not
    regenerated); the recurrent backbones have no CTranslate2 counterpart.
    """
    if cfg.model.type != "transformer":
        raise ExportError(
            f"cannot export a '{cfg.model.type}' model: CTranslate2 runs Transformer "
            "encoder-decoders only, not recurrent (RNN) backbones"
        )


# --- the spec -------------------------------------------------------------------------------


def build_spec(model: Transformer, cfg: Config, tok: Tokenizer) -> Any:
    """A validated ``ctranslate2.specs.TransformerSpec`` holding the model's weights."""
    from ctranslate2.specs import TransformerSpec

    t = cfg.model.transformer
    spec = TransformerSpec.from_config(
        (t.encoder_layers, t.decoder_layers),
        t.heads,
        pre_norm=t.norm == "pre",
        alignment_layer=-1,
        alignment_heads=t.heads,
    )
    _fill_encoder(spec.encoder, model)
    _fill_decoder(spec.decoder, model)
    _configure(spec, model, tok)
    spec.validate()
    return spec


def _array(tensor: torch.Tensor) -> Any:
    return tensor.detach().float().cpu().numpy().copy()


def _linear(target: Any, linear: nn.Linear) -> None:
    target.weight = _array(linear.weight)  # (out, in), as CTranslate2 expects
    if linear.bias is not None:
        target.bias = _array(linear.bias)


def _norm(target: Any, norm: nn.LayerNorm) -> None:
    target.gamma, target.beta = _array(norm.weight), _array(norm.bias)


def _fill_encoder(spec: Any, model: Transformer) -> None:
    spec.embeddings[0].weight = _array(model.src_embed.table.weight)  # (V, D)
    spec.scale_embeddings = True  # x * sqrt(d_model), sec. 3.4
    spec.position_encodings.encodings = _array(model.src_embed.positions)  # (P, D)
    for layer_spec, layer in zip(spec.layer, model.encoder.layers):
        _linear(layer_spec.self_attention.linear[0], layer.attn.qkv)  # [q; k; v]
        _linear(layer_spec.self_attention.linear[1], layer.attn.out)
        _norm(layer_spec.self_attention.layer_norm, layer.attn_res.norm)
        _linear(layer_spec.ffn.linear_0, layer.ff.inner)
        _linear(layer_spec.ffn.linear_1, layer.ff.outer)
        _norm(layer_spec.ffn.layer_norm, layer.ff_res.norm)
    if isinstance(model.encoder.norm, nn.LayerNorm):  # pre-norm stacks end in a LayerNorm
        _norm(spec.layer_norm, model.encoder.norm)


def _fill_decoder(spec: Any, model: Transformer) -> None:
    spec.embeddings.weight = _array(model.tgt_embed.table.weight)  # (V, D)
    spec.scale_embeddings = True
    spec.position_encodings.encodings = _array(model.tgt_embed.positions)  # (P, D)
    for layer_spec, layer in zip(spec.layer, model.decoder.layers):
        _linear(layer_spec.self_attention.linear[0], layer.self_attn.qkv)  # [q; k; v]
        _linear(layer_spec.self_attention.linear[1], layer.self_attn.out)
        _norm(layer_spec.self_attention.layer_norm, layer.self_res.norm)
        _linear(layer_spec.attention.linear[0], layer.cross_attn.q)
        _linear(layer_spec.attention.linear[1], layer.cross_attn.kv)  # [k; v]
        _linear(layer_spec.attention.linear[2], layer.cross_attn.out)
        _norm(layer_spec.attention.layer_norm, layer.cross_res.norm)
        _linear(layer_spec.ffn.linear_0, layer.ff.inner)
        _linear(layer_spec.ffn.linear_1, layer.ff.outer)
        _norm(layer_spec.ffn.layer_norm, layer.ff_res.norm)
    if isinstance(model.decoder.norm, nn.LayerNorm):
        _norm(spec.layer_norm, model.decoder.norm)
    _linear(spec.projection, model.out)  # (V, D), no bias; tied: the embedding itself


def _layer_norm_eps(model: Transformer) -> float:
    """The one epsilon every LayerNorm of the model uses (CTranslate2 takes one value)."""
    eps = {m.eps for m in model.modules() if isinstance(m, nn.LayerNorm)}
    if len(eps) != 1:
        raise ExportError(f"cannot export LayerNorms with different epsilons {sorted(eps)}")
    return eps.pop()


def vocabulary(sp: Any) -> list[str]:
    """Every piece at its SentencePiece id, so CTranslate2's ids are ours."""
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    if len(set(pieces)) != len(pieces):
        raise ExportError("the SentencePiece model has duplicate pieces")
    return pieces


def _configure(spec: Any, model: Transformer, tok: Tokenizer) -> None:
    src_vocab, tgt_vocab = vocabulary(tok.src), vocabulary(tok.tgt)
    spec.register_source_vocabulary(src_vocab)
    spec.register_target_vocabulary(tgt_vocab)
    config = spec.config
    config.unk_token = tgt_vocab[tok.unk_id]
    config.bos_token = tgt_vocab[tok.bos_id]
    config.eos_token = tgt_vocab[tok.eos_id]
    config.decoder_start_token = tgt_vocab[tok.bos_id]
    config.add_source_bos = False
    config.add_source_eos = True  # our encoder input ends with </s> (Tokenizer.encode_src)
    config.layer_norm_epsilon = _layer_norm_eps(model)
    if src_vocab[tok.eos_id] != config.eos_token:
        raise ExportError("source and target vocabularies name </s> differently")


def _save_spec(spec: Any, directory: Path, quantization: str) -> None:
    spec.optimize(quantization=quantization)
    spec.save(str(directory))


# --- files beside the model -----------------------------------------------------------------


def _save_tokenizer(tok: Tokenizer, directory: Path) -> dict[str, str]:
    """Write the SentencePiece model(s); return their file names per side."""
    tok.save(directory / "tokenizer")
    src, tgt = Tokenizer.paths(directory / "tokenizer", tok.joint)
    return {"src": src.name, "tgt": tgt.name}


def write_metadata(
    directory: Path,
    cfg: Config,
    tok: Tokenizer,
    tok_files: dict[str, str],
    quantization: str,
    source: Path,
    meta: dict,
) -> None:
    """``nmt-export.json``: format, tokenizer files and ids, search defaults, provenance."""
    import ctranslate2

    data = {
        "format": EXPORT_FORMAT,
        "engine": "ctranslate2",
        "ctranslate2_version": ctranslate2.__version__,
        "nmt_version": nmt.__version__,
        "quantization": quantization,
        "tokenizer": {"joint": tok.joint, **tok_files},
        "special_ids": {
            "pad": tok.pad_id,
            "unk": tok.unk_id,
            "bos": tok.bos_id,
            "eos": tok.eos_id,
        },
        "max_positions": cfg.model.transformer.max_positions,
        "exported_from": {"checkpoint": str(source), "step": meta.get("step")},
        "config": to_dict(cfg),
    }
    text = json.dumps(data, indent=2) + "\n"
    (directory / META_FILE).write_text(text, encoding="utf-8")


def is_exported_dir(path: Path) -> bool:
    """True for a directory written by :func:`export_ctranslate2`."""
    return Path(path).is_dir() and (Path(path) / META_FILE).is_file()
