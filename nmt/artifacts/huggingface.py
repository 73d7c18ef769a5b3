"""Export a trained Transformer as a Hugging Face ``transformers`` model directory.

The directory loads with ``AutoModelForSeq2SeqLM.from_pretrained(DIR)`` and
``AutoTokenizer.from_pretrained(DIR)`` and translates with ``model.generate`` (transformers 5
removed ``pipeline("translation")``: it is in its REMOVED_TASKS).
No ``transformers`` class is our network under another name, so the class is chosen by
the one thing that differs between them, where the LayerNorms sit:

- ``norm: post`` -> **MarianMT** (``MarianMTModel``): post-norm layers, no final
  LayerNorms, sinusoidal positions from position 0 (not padding-dependent). Marian's
  sinusoid puts all sines first and all cosines second, ours interleaves them
  (sin, cos, sin, ...); the positions are generated, not loaded (they are not in its
  state dict), so the model dimension is permuted instead: dimension ``j`` of Marian is
  our dimension ``perm[j]`` (even ones first). A permutation of the residual basis
  changes nothing the network computes (LayerNorm, residual sums and dot products are
  permutation-equivariant), so every weight that reads or writes the residual stream is
  permuted along that axis (:func:`permute`).
- ``norm: pre`` -> **Blenderbot** (``BlenderbotForConditionalGeneration``): pre-norm
  layers and a final LayerNorm after each stack, as ours; learned positions from
  position 0, into which our sinusoidal table is written. (M2M100 is pre-norm too, but
  its sinusoid has other frequencies, is generated not loaded, and starts at
  ``padding_idx + 1``; MBart adds a LayerNorm after the embeddings.)

Both: ``scale_embedding`` (x * sqrt(d_model), sec. 3.4), ReLU, biased projections,
LayerNorm eps 1e-5 (checked), zero ``final_logits_bias``; tied runs keep one matrix for
source, target and output (``tie_word_embeddings``), untied post-norm ones become a
MarianMT with ``share_encoder_decoder_embeddings`` and ``tie_word_embeddings`` off (and a
``target_vocab.json`` for a separate target vocabulary); Blenderbot always shares the
encoder and decoder embeddings, so untied pre-norm runs are refused. Our fused Q/K/V and K/V
projections are split into ``q_proj``/``k_proj``/``v_proj``. The tokenizer is a
``MarianTokenizer`` (``source.spm``, ``target.spm``, ``vocab.json``) whose vocabulary
maps every SentencePiece piece to its own id, so its ids are ours; it appends ``</s>``
like :meth:`nmt.tokenizer.Tokenizer.encode_src`. The decoder starts from our ``<s>``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from nmt.artifacts.checkpoint import load_checkpoint, resolve_model_path
from nmt.artifacts.hf_card import write_model_card
from nmt.config import Config
from nmt.errors import UsageError
from nmt.models.transformer import Transformer
from nmt.tokenizer import Tokenizer

log = logging.getLogger("nmt.artifacts.huggingface")

LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default: what Marian and Blenderbot build
ARCHITECTURES = {"post": "MarianMTModel", "pre": "BlenderbotForConditionalGeneration"}
MODEL_TYPES = {"post": "marian", "pre": "blenderbot"}

# How a weight touches the residual stream (the axis a Marian export permutes):
IN, OUT, ROWS_AND_IN, VEC = "in", "out", "emb", "vec"


class HFExportError(UsageError):
    """A model or output directory that cannot be exported; the message says why."""


def require_transformers() -> None:
    try:
        import transformers  # noqa: F401  (optional dependency: the hf extra)
    except ImportError as e:
        raise UsageError("the Hugging Face format needs transformers: pip install 'nmt[hf]'") from e


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No progress bars or warnings from transformers on our command line (errors still)."""
    from transformers.utils import logging as hf_logging  # optional dependency (hf extra)

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


# --- the weight map (used both ways: export and import) ------------------------------------


def weight_pairs(model: Transformer, norm: str, tied: bool) -> list[tuple[str, Tensor, str]]:
    """(Hugging Face name, view of our tensor, kind) for every weight of the network.

    The views share storage with our parameters, so the import writes through them.
    Tied weights appear once (``model.shared.weight``); transformers ties the rest.
    """
    if tied:
        pairs = [("model.shared.weight", model.src_embed.table.weight.data, ROWS_AND_IN)]
    else:
        pairs = [
            ("model.encoder.embed_tokens.weight", model.src_embed.table.weight.data, ROWS_AND_IN),
            ("model.decoder.embed_tokens.weight", model.tgt_embed.table.weight.data, ROWS_AND_IN),
            ("lm_head.weight", model.out.weight.data, IN),
        ]
    if norm == "pre":  # Blenderbot's learned positions hold our sinusoidal table
        pairs.append(("model.encoder.embed_positions.weight", model.src_embed.positions, VEC))
        pairs.append(("model.decoder.embed_positions.weight", model.tgt_embed.positions, VEC))
    for i, layer in enumerate(model.encoder.layers):
        p = f"model.encoder.layers.{i}."
        pairs += _attention(p + "self_attn.", layer.attn.qkv, layer.attn.out)
        pairs += _norm(p + "self_attn_layer_norm", layer.attn_res.norm)
        pairs += _ffn(p, layer.ff)
        pairs += _norm(p + "final_layer_norm", layer.ff_res.norm)
    for i, layer in enumerate(model.decoder.layers):
        p = f"model.decoder.layers.{i}."
        pairs += _attention(p + "self_attn.", layer.self_attn.qkv, layer.self_attn.out)
        pairs += _norm(p + "self_attn_layer_norm", layer.self_res.norm)
        q = layer.cross_attn
        pairs += _linear(p + "encoder_attn.q_proj", q.q.weight.data, q.q.bias.data, IN)
        k_w, v_w = q.kv.weight.data.chunk(2, dim=0)
        k_b, v_b = q.kv.bias.data.chunk(2, dim=0)
        pairs += _linear(p + "encoder_attn.k_proj", k_w, k_b, IN)
        pairs += _linear(p + "encoder_attn.v_proj", v_w, v_b, IN)
        pairs += _linear(p + "encoder_attn.out_proj", q.out.weight.data, q.out.bias.data, OUT)
        pairs += _norm(p + "encoder_attn_layer_norm", layer.cross_res.norm)
        pairs += _ffn(p, layer.ff)
        pairs += _norm(p + "final_layer_norm", layer.ff_res.norm)
    if norm == "pre":
        pairs += _norm("model.encoder.layer_norm", model.encoder.norm)
        pairs += _norm("model.decoder.layer_norm", model.decoder.norm)
    return pairs


def _linear(name: str, weight: Tensor, bias: Tensor, kind: str) -> list[tuple[str, Tensor, str]]:
    return [(name + ".weight", weight, kind), (name + ".bias", bias, VEC if kind == OUT else "")]


def _attention(prefix: str, qkv: nn.Linear, out: nn.Linear) -> list[tuple[str, Tensor, str]]:
    pairs = []
    weights, biases = qkv.weight.data.chunk(3, dim=0), qkv.bias.data.chunk(3, dim=0)
    for name, w, b in zip(("q_proj", "k_proj", "v_proj"), weights, biases):
        pairs += _linear(prefix + name, w, b, IN)
    return pairs + _linear(prefix + "out_proj", out.weight.data, out.bias.data, OUT)


def _ffn(prefix: str, ff: nn.Module) -> list[tuple[str, Tensor, str]]:
    inner = _linear(prefix + "fc1", ff.inner.weight.data, ff.inner.bias.data, IN)
    return inner + _linear(prefix + "fc2", ff.outer.weight.data, ff.outer.bias.data, OUT)


def _norm(name: str, norm: nn.Module) -> list[tuple[str, Tensor, str]]:
    return [(name + ".weight", norm.weight.data, VEC), (name + ".bias", norm.bias.data, VEC)]


def residual_permutation(d_model: int) -> Tensor:
    """Marian dimension j is our dimension perm[j]: our sines (even) first, then cosines."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])


def permute(tensor: Tensor, kind: str, perm: Tensor | None) -> Tensor:
    """Our tensor in the Hugging Face basis (``perm``) or back (its inverse)."""
    if perm is None or not kind:
        return tensor
    if kind == VEC:
        return tensor[..., perm]
    if kind == OUT:  # (D, in): the rows write the residual stream
        return tensor[perm]
    return tensor[:, perm]  # IN (out, D) and the embedding (V, D): columns read/are it


# --- export ------------------------------------------------------------------------------------


def check_exportable(cfg: Config) -> None:
    """Refuse, in one line, what no Hugging Face class computes exactly."""
    if cfg.model.type != "transformer":
        raise HFExportError(
            f"cannot export a '{cfg.model.type}' model to Hugging Face: MarianMT and Blenderbot "
            "are Transformer encoder-decoders, nothing in transformers runs our RNN backbones"
        )
    t = cfg.model.transformer
    if not t.tie_embeddings and t.norm == "pre":
        raise HFExportError(
            "cannot export a pre-norm model with model.transformer.tie_embeddings=false: "
            "Blenderbot shares one embedding matrix between encoder and decoder"
        )
    if t.norm not in ARCHITECTURES:
        raise HFExportError(f"cannot export model.transformer.norm={t.norm!r}")


def export_huggingface(model_path: Path, out: Path) -> Path:
    """Write a transformers model directory for the Transformer at ``model_path``."""
    require_transformers()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HFExportError(f"{out} already exists and is not an empty directory")
    source = resolve_model_path(model_path)
    model, tok, cfg, meta = load_checkpoint(source, "cpu")
    check_exportable(cfg)
    assert isinstance(model, Transformer)
    eps = {m.eps for m in model.modules() if isinstance(m, nn.LayerNorm)}
    if eps != {LAYER_NORM_EPS}:
        raise HFExportError(f"LayerNorm eps {sorted(eps)} differ from transformers' 1e-5")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        staging = Path(tmp) / "model"
        staging.mkdir()
        with quiet_transformers():
            hf_model = build_hf_model(model, cfg, tok)
            hf_model.save_pretrained(str(staging))
        save_hf_tokenizer(tok, cfg, staging)
        write_model_card(staging, cfg, meta, source, ARCHITECTURES[cfg.model.transformer.norm])
        if out.exists():
            out.rmdir()  # empty (checked above): replaced by the finished directory
        staging.replace(out)
    log.info("exported %s to %s (%s)", source, out, ARCHITECTURES[cfg.model.transformer.norm])
    return out


def hf_config(cfg: Config, tok: Tokenizer) -> object:
    """The MarianConfig or BlenderbotConfig of our Transformer."""
    import transformers  # optional dependency (the hf extra), imported where it is used

    t = cfg.model.transformer
    common = dict(
        vocab_size=tok.src_vocab_size,
        max_position_embeddings=t.max_positions,
        d_model=t.d_model,
        encoder_layers=t.encoder_layers,
        decoder_layers=t.decoder_layers,
        encoder_ffn_dim=t.ff_dim,
        decoder_ffn_dim=t.ff_dim,
        encoder_attention_heads=t.heads,
        decoder_attention_heads=t.heads,
        activation_function="relu",
        dropout=t.dropout,
        attention_dropout=t.attention_dropout,
        activation_dropout=0.0,
        scale_embedding=True,
        pad_token_id=tok.pad_id,
        bos_token_id=tok.bos_id,
        eos_token_id=tok.eos_id,
        decoder_start_token_id=tok.bos_id,
        forced_eos_token_id=None,
        tie_word_embeddings=t.tie_embeddings,
        architectures=[ARCHITECTURES[t.norm]],
    )
    if t.norm == "post":
        return transformers.MarianConfig(
            decoder_vocab_size=tok.tgt_vocab_size,
            share_encoder_decoder_embeddings=t.tie_embeddings,
            **common,
        )
    return transformers.BlenderbotConfig(encoder_no_repeat_ngram_size=0, **common)


def build_hf_model(model: Transformer, cfg: Config, tok: Tokenizer) -> nn.Module:
    """A transformers model holding our weights (eval mode), with our generation defaults."""
    import transformers  # optional dependency (the hf extra), imported where it is used

    norm = cfg.model.transformer.norm
    config = hf_config(cfg, tok)
    hf = getattr(transformers, ARCHITECTURES[norm])(config)
    perm = residual_permutation(cfg.model.transformer.d_model) if norm == "post" else None
    pairs = weight_pairs(model, norm, cfg.model.transformer.tie_embeddings)
    state = {name: permute(t, kind, perm).clone() for name, t, kind in pairs}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    derived = ("lm_head.weight", "final_logits_bias", "embed_tokens.weight", "positions.weight")
    left = sorted(k for k in missing if not k.endswith(derived))  # tied, zero or generated
    if left or unexpected:
        raise HFExportError(
            f"weights do not fit {ARCHITECTURES[norm]}: missing {left}, unexpected {unexpected}"
        )
    hf.tie_weights()
    with torch.no_grad():
        hf.final_logits_bias.zero_()
    hf.generation_config = generation_config(cfg, tok)
    return hf.eval()


def generation_config(cfg: Config, tok: Tokenizer) -> object:
    """Our search defaults in transformers' terms.

    ``length_penalty`` is copied as a number, but the two normalise differently: nmt
    ranks finished hypotheses by log P / ((5 + |Y|) / 6) ** alpha (Wu et al. 2016, eq. 14;
    :func:`nmt.inference.search.length_penalty`), transformers by log P / |Y| ** alpha.
    Greedy search is the same in both. nmt's output limit is a * source length + b
    per sentence; transformers has one static ``max_length`` (here the positions limit).
    """
    import transformers  # optional dependency (the hf extra), imported where it is used

    s = cfg.search
    return transformers.GenerationConfig(
        num_beams=s.beam,
        length_penalty=s.length_penalty,
        early_stopping=True,  # stop a sentence at `beam` finished hypotheses, as nmt does
        max_length=cfg.model.transformer.max_positions,
        decoder_start_token_id=tok.bos_id,
        bos_token_id=tok.bos_id,
        eos_token_id=tok.eos_id,
        pad_token_id=tok.pad_id,
    )


def vocab_json(sp) -> dict[str, int]:
    """Every SentencePiece piece at its own id."""
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    if len(vocab) != sp.get_piece_size():
        raise HFExportError("the SentencePiece model has duplicate pieces")
    return vocab


def save_hf_tokenizer(tok: Tokenizer, cfg: Config, directory: Path) -> None:
    """A MarianTokenizer over our SentencePiece model(s): source.spm, target.spm, vocab.json
    (and target_vocab.json for separate vocabularies)."""
    import transformers  # optional dependency (the hf extra), imported where it is used

    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: Path(tmp) / name for name in ("s.spm", "t.spm", "s.json", "t.json")}
        paths["s.spm"].write_bytes(tok.src_proto)
        paths["t.spm"].write_bytes(tok.tgt_proto)
        for name, sp in (("s.json", tok.src), ("t.json", tok.tgt)):
            text = json.dumps(vocab_json(sp), ensure_ascii=False)
            paths[name].write_text(text, encoding="utf-8")
        piece = tok.tgt.id_to_piece
        with warnings.catch_warnings():  # "pip install sacremoses": its normalizer is unused
            warnings.simplefilter("ignore", UserWarning)
            hf_tok = transformers.MarianTokenizer(
                source_spm=str(paths["s.spm"]),
                target_spm=str(paths["t.spm"]),
                vocab=str(paths["s.json"]),
                target_vocab_file=None if tok.joint else str(paths["t.json"]),
                separate_vocabs=not tok.joint,
                source_lang=cfg.data.src_lang,
                target_lang=cfg.data.tgt_lang,
                unk_token=piece(tok.unk_id),
                eos_token=piece(tok.eos_id),
                pad_token=piece(tok.pad_id),
                bos_token=piece(tok.bos_id),
                model_max_length=cfg.model.transformer.max_positions,
            )
        hf_tok.save_pretrained(str(directory))
