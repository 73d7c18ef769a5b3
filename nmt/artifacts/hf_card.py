"""The model card (README.md) of a Hugging Face export: data, config, scores, usage."""

from __future__ import annotations

import json
from pathlib import Path

import nmt
from nmt.artifacts.rundir import RunDir
from nmt.config import Config


def _scores(source: Path) -> list[str]:
    """Table rows of the run's cached test scores (``nmt compare``'s evaluation.json)."""
    evaluation = RunDir(source.parent).evaluation
    if not evaluation.is_file():
        return []
    try:
        tests = json.loads(evaluation.read_text(encoding="utf-8")).get("test", {})
    except (json.JSONDecodeError, AttributeError):
        return []
    rows = []
    for name, scores in tests.items():
        if isinstance(scores, dict):
            shown = {k: v for k, v in scores.items() if isinstance(v, int | float)}
            rows.append(f"| {name} | " + ", ".join(f"{k} {v:.2f}" for k, v in shown.items()) + " |")
    return rows


def write_model_card(
    directory: Path, cfg: Config, meta: dict, source: Path, architecture: str
) -> None:
    d, t, s = cfg.data, cfg.model.transformer, cfg.search
    src, tgt = d.src_lang, d.tgt_lang
    lines = [
        "---",
        f"language: [{src}, {tgt}]",
        "library_name: transformers",
        "pipeline_tag: translation",
        "tags: [translation, nmt]",
        "---",
        "",
        f"# {src}->{tgt} Transformer trained with nmt {nmt.__version__}",
        "",
        f"Exported by `nmt export --format huggingface` from `{source.name}`"
        + (f" (step {meta['step']})" if meta.get("step") is not None else "")
        + f" as `{architecture}`: the same network and weights"
        + (" (model dimensions reordered to Marian's positions)." if t.norm == "post" else "."),
        "",
        "## Training data",
        "",
        f"- data directory `{d.dir}`: train split `{d.train}`, validation `{d.valid}`, "
        f"test `{d.test}`",
        f"- SentencePiece {cfg.tokenizer.type}, {cfg.tokenizer.vocab_size} pieces, "
        + ("joint" if cfg.tokenizer.joint else "separate")
        + " vocabulary",
        "",
        "## Model",
        "",
        f"- Transformer, {t.norm}-norm, d_model {t.d_model}, {t.heads} heads, "
        f"feed-forward {t.ff_dim}, {t.encoder_layers}+{t.decoder_layers} layers, "
        + ("tied" if t.tie_embeddings else "untied")
        + f" embeddings, max {t.max_positions} positions",
        "",
        "## Scores",
        "",
    ]
    if meta.get("valid_bleu") is not None:
        lines.append(f"- validation BLEU {meta['valid_bleu']:.2f} (at the exported step)")
    rows = _scores(source)
    if rows:
        lines += ["", "| test set | scores |", "|---|---|", *rows]
    if meta.get("valid_bleu") is None and not rows:
        lines.append("No scores were recorded with this checkpoint.")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForSeq2SeqLM, AutoTokenizer",
        'tokenizer = AutoTokenizer.from_pretrained("PATH/TO/THIS/DIR")',
        'model = AutoModelForSeq2SeqLM.from_pretrained("PATH/TO/THIS/DIR")',
        'batch = tokenizer(["..."], return_tensors="pt", padding=True)',
        "print(tokenizer.batch_decode(model.generate(**batch), skip_special_tokens=True))",
        "```",
        "",
        'transformers 5 removed `pipeline("translation")` (its REMOVED_TASKS): translate '
        "with `generate` as above.",
        "",
        f"Search defaults (generation_config.json): beam {s.beam}, length_penalty "
        f"{s.length_penalty}. transformers divides a hypothesis' log-probability by "
        "len ** length_penalty, nmt by ((5 + len) / 6) ** alpha (GNMT), so beam outputs "
        "can differ slightly; greedy outputs (num_beams=1) are the same.",
        "",
    ]
    (directory / "README.md").write_text("\n".join(lines), encoding="utf-8")
