"""Import a Hugging Face MarianMT or Blenderbot directory as an nmt run directory.

The reverse of :mod:`nmt.artifacts.huggingface`, for checkpoints whose shape our
Transformer expresses exactly: MarianMT is our post-norm Transformer (its sin-then-cos
positions undo the export's permutation), Blenderbot our pre-norm one (when its learned
positions are our sinusoidal table). Anything else is refused in one line naming the
field: another activation, unscaled embeddings, an output layer tied to the decoder
embeddings alone (nmt ties all three or none), a non-zero output bias, a
SentencePiece model whose ids are not the model's ids (``vocab.json``), a decoder start
token that is not the SentencePiece ``<s>``. M2M100 is refused: its positions (a fairseq
sinusoid with other frequencies, starting at ``padding_idx + 1``) are generated, not
stored, and are not ours.

The run directory holds ``best.safetensors`` (weights, tokenizer, config: what
``nmt translate``, ``evaluate``, ``serve`` and ``nmt train --init`` read),
``config.yaml`` and ``tokenizer.model`` (or ``tokenizer.src/.tgt.model``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import torch

from nmt.artifacts.checkpoint import save_checkpoint
from nmt.artifacts.huggingface import (
    ARCHITECTURES,
    permute,
    quiet_transformers,
    require_transformers,
    residual_permutation,
    vocab_json,
    weight_pairs,
)
from nmt.artifacts.rundir import RunDir
from nmt.config import Config, TransformerConfig, save_config, validate
from nmt.errors import UsageError
from nmt.models import build_model
from nmt.models.transformer import Transformer, sinusoidal_table
from nmt.tokenizer import Tokenizer

log = logging.getLogger("nmt.artifacts.huggingface")

NORMS = {"marian": "post", "blenderbot": "pre"}


class HFImportError(UsageError):
    """A directory that is not an importable Hugging Face model; the message says why."""


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HFImportError(f"{path} is not readable JSON ({e})") from e
    if not isinstance(data, dict):
        raise HFImportError(f"{path} is not a JSON object")
    return data


def read_hf_config(src: Path) -> tuple[dict, str, bool]:
    """config.json, the norm placement its class implies and whether nmt ties the embeddings.

    Encoder, decoder and output sharing one matrix is nmt's ``tie_embeddings``; any other
    sharing is expressed untied, with copies, except an output layer tied to the decoder
    embeddings alone (nmt ties all three or none).
    """
    if not (src / "config.json").is_file():
        raise HFImportError(f"{src} is not a Hugging Face model directory (no config.json)")
    c = _read_json(src / "config.json")
    kind = c.get("model_type")
    if kind == "m2m_100":
        raise HFImportError(
            "model_type m2m_100: its positions (fairseq sinusoid from padding_idx + 1, "
            "generated, not stored) are not nmt's; only marian and blenderbot import"
        )
    if kind not in NORMS:
        raise HFImportError(f"model_type {kind!r} cannot be imported (marian or blenderbot only)")
    norm = NORMS[kind]
    for key, want in (("activation_function", "relu"), ("scale_embedding", True)):
        if c.get(key) != want:
            raise HFImportError(f"{key}={c.get(key)!r} cannot be expressed (nmt has {want!r})")
    share = c.get("share_encoder_decoder_embeddings", True)
    tie = c.get("tie_word_embeddings", True)
    if tie and not share:
        raise HFImportError(
            "tie_word_embeddings=true with share_encoder_decoder_embeddings=false (output tied "
            "to the decoder embeddings only) cannot be expressed: nmt ties all three or none"
        )
    if "normalize_before" in c and bool(c["normalize_before"]) != (norm == "pre"):
        raise HFImportError(f"normalize_before={c['normalize_before']} contradicts {kind}")
    for a, b in (
        ("encoder_ffn_dim", "decoder_ffn_dim"),
        ("encoder_attention_heads", "decoder_attention_heads"),
    ):
        if c.get(a) != c.get(b):
            raise HFImportError(f"{a}={c.get(a)} and {b}={c.get(b)} differ (nmt has one value)")
    if share and c.get("decoder_vocab_size") not in (None, c.get("vocab_size")):
        raise HFImportError("decoder_vocab_size differs from vocab_size of shared embeddings")
    return c, norm, bool(share and tie)


def read_hf_tokenizer(src: Path, c: dict, generation: dict) -> Tokenizer:
    """Our Tokenizer from a MarianTokenizer's files, when its ids are SentencePiece's."""
    for name in ("source.spm", "target.spm", "vocab.json"):
        if not (src / name).is_file():
            raise HFImportError(f"{src} has no {name} (a MarianTokenizer's SentencePiece files)")
    src_proto, tgt_proto = (src / "source.spm").read_bytes(), (src / "target.spm").read_bytes()
    joint = src_proto == tgt_proto
    if not joint and c.get("share_encoder_decoder_embeddings", True):
        raise HFImportError("source.spm and target.spm differ but the embeddings are shared")
    tok = Tokenizer(src_proto, None if joint else tgt_proto)
    target_vocab = src / "target_vocab.json"
    vocabs = [("vocab.json", src / "vocab.json", tok.src)]
    vocabs.append(
        ("target_vocab.json", target_vocab, tok.tgt)
        if target_vocab.is_file()
        else ("vocab.json", src / "vocab.json", tok.tgt)
    )
    for name, path, sp in vocabs:
        if _read_json(path) != vocab_json(sp):
            raise HFImportError(
                f"{name} does not map every SentencePiece piece to its own id "
                "(nmt uses SentencePiece ids directly)"
            )
    decoder_vocab = c.get("decoder_vocab_size") or c.get("vocab_size")
    for key, value, pieces in (
        ("vocab_size", c.get("vocab_size"), tok.src_vocab_size),
        ("decoder_vocab_size", decoder_vocab, tok.tgt_vocab_size),
    ):
        if value != pieces:
            raise HFImportError(f"{key}={value} differs from the {pieces} SentencePiece pieces")
    start = generation.get("decoder_start_token_id", c.get("decoder_start_token_id"))
    for key, value, ours in (
        ("pad_token_id", c.get("pad_token_id"), tok.pad_id),
        ("eos_token_id", c.get("eos_token_id"), tok.eos_id),
        ("decoder_start_token_id", start, tok.bos_id),
    ):
        if value != ours:
            raise HFImportError(f"{key}={value} is not the SentencePiece model's id {ours}")
    return tok


def nmt_config(
    c: dict, norm: str, tied: bool, tok: Tokenizer, src: Path, generation: dict
) -> Config:
    """The resolved nmt config of the imported model."""
    heads = c["encoder_attention_heads"]
    if c["d_model"] % heads:
        raise HFImportError(f"d_model={c['d_model']} is not divisible by {heads} heads")
    t = TransformerConfig(
        d_model=c["d_model"],
        heads=heads,
        ff_dim=c["encoder_ffn_dim"],
        encoder_layers=c["encoder_layers"],
        decoder_layers=c["decoder_layers"],
        dropout=float(c.get("dropout", 0.1)),
        attention_dropout=float(c.get("attention_dropout", 0.0)),
        norm=norm,
        tie_embeddings=tied,
        max_positions=c["max_position_embeddings"],
    )
    cfg = Config()
    tok_path = src / "tokenizer_config.json"
    tok_cfg = _read_json(tok_path) if tok_path.is_file() else {}
    data = dataclasses.replace(
        cfg.data,
        src_lang=tok_cfg.get("source_lang") or cfg.data.src_lang,
        tgt_lang=tok_cfg.get("target_lang") or cfg.data.tgt_lang,
    )
    tokenizer = dataclasses.replace(
        cfg.tokenizer, vocab_size=tok.src_vocab_size, joint=tok.joint, type=_spm_type(tok)
    )
    search = cfg.search
    if isinstance(generation.get("num_beams"), int) and generation["num_beams"] >= 1:
        search = dataclasses.replace(search, beam=generation["num_beams"])
    model = dataclasses.replace(cfg.model, type="transformer", transformer=t)
    cfg = dataclasses.replace(cfg, data=data, tokenizer=tokenizer, model=model, search=search)
    return validate(cfg)


def _spm_type(tok: Tokenizer) -> str:
    """bpe or unigram, read from the SentencePiece model's trainer spec."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(tok.src_proto)
    return "unigram" if proto.trainer_spec.model_type == pb.TrainerSpec.UNIGRAM else "bpe"


def load_hf_weights(src: Path, kind: str) -> dict[str, torch.Tensor]:
    """The model's state dict, loaded by transformers (safetensors or bin, sharded or not)."""
    import transformers  # optional dependency (the hf extra), imported where it is used

    try:
        with quiet_transformers():
            hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(src))
    except Exception as e:  # transformers raises OSError, ValueError, SafetensorError...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HFImportError(f"{src}: cannot load the weights ({first})") from e
    if type(hf).__name__ != ARCHITECTURES[NORMS[kind]]:
        raise HFImportError(f"{src} loads as {type(hf).__name__}, not {ARCHITECTURES[NORMS[kind]]}")
    return {k: v.detach().float() for k, v in hf.state_dict().items()}


def fill_model(model: Transformer, state: dict[str, torch.Tensor], norm: str, tied: bool) -> None:
    """Copy the Hugging Face weights into ours (undoing the Marian permutation)."""
    bias = state.get("final_logits_bias")
    if bias is not None and bias.abs().max() > 0:
        raise HFImportError("final_logits_bias is not zero (nmt's output layer has no bias)")
    perm = None
    if norm == "post":
        perm = torch.argsort(residual_permutation(model.src_embed.table.embedding_dim))
    with torch.no_grad():
        for name, ours, kind in weight_pairs(model, norm, tied):
            theirs = state[name]
            if "embed_positions" in name:
                table = sinusoidal_table(theirs.size(0), theirs.size(1))
                if not torch.allclose(theirs, table, atol=1e-5):
                    raise HFImportError(f"{name} is not the sinusoidal table nmt uses (learned?)")
                continue
            theirs = permute(theirs, kind, perm)
            if theirs.shape != ours.shape:
                shapes = f"{tuple(theirs.shape)}, not {tuple(ours.shape)}"
                raise HFImportError(f"{name} has shape {shapes}")
            ours.copy_(theirs)


def import_huggingface(src: Path, out: Path) -> Path:
    """Write a run directory for the transformers model at ``src``; return its checkpoint."""
    require_transformers()
    src = Path(src)
    if not src.is_dir():
        raise HFImportError(f"{src} is not a directory")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HFImportError(f"{out} already exists and is not an empty directory")
    c, norm, tied = read_hf_config(src)
    gen_path = src / "generation_config.json"
    generation = _read_json(gen_path) if gen_path.is_file() else {}
    tok = read_hf_tokenizer(src, c, generation)
    cfg = nmt_config(c, norm, tied, tok, src, generation)
    state = load_hf_weights(src, c["model_type"])
    model = build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, tok.pad_id)
    assert isinstance(model, Transformer)
    fill_model(model, state, norm, tied)
    run = RunDir(out)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(run.tokenizer_prefix)
    cfg = dataclasses.replace(
        cfg, tokenizer=dataclasses.replace(cfg.tokenizer, model=str(run.tokenizer_prefix))
    )
    save_config(cfg, run.config)
    meta = {"imported_from": str(src.resolve()), "architecture": ARCHITECTURES[norm]}
    save_checkpoint(run.best, model.eval(), tok, cfg, meta)
    log.info("imported %s (%s) to %s", src, ARCHITECTURES[norm], out)
    return run.best
