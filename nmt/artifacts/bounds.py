"""Bounds on sizes read from a checkpoint before a model is built from them.

A checkpoint's config is data from a file: a crafted ``encoder_layers: 1000000`` or
``d_model: 65536`` would make building the model take minutes and gigabytes before the
weights are even looked at. The weights themselves are the cheap, exact bound: every
layer holds at least one stored tensor, no dimension exceeds the elements stored, and the
model the config describes must have exactly as many parameters as the file stores. Only
then is the model built for real.
"""

from __future__ import annotations

import dataclasses
import json

import torch

from nmt.config import ModelConfig
from nmt.config.validate import MAXIMA
from nmt.errors import UsageError
from nmt.models import build_model

# Positional encodings are computed, not stored: their table (positions x d_model) is
# the one size the weights do not bound. The config's own bound, so that every model a
# config can describe also loads.
MAX_POSITIONS = MAXIMA["model.transformer.max_positions"]


def parse_aliases(text: str | None, tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """The ``aliases`` header (tied weight -> stored tensor), checked against ``tensors``."""
    try:
        aliases = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        raise UsageError(f"aliases are not JSON ({e})") from e
    if not isinstance(aliases, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()
    ):
        raise UsageError("aliases must map tensor names to tensor names")
    missing = sorted({v for v in aliases.values() if v not in tensors})
    if missing:
        raise UsageError(f"aliases name tensors the file does not hold: {', '.join(missing[:3])}")
    return aliases


def check_model_size(
    cfg: ModelConfig, tensors: dict[str, torch.Tensor], aliases: dict[str, str], vocab: tuple
) -> None:
    """Raise :class:`UsageError` unless the model ``cfg`` describes is the one stored."""
    section = getattr(cfg, cfg.type, None)
    if not dataclasses.is_dataclass(section):
        raise UsageError(f"unknown model type '{cfg.type}'")
    stored = sum(t.numel() for t in tensors.values())
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        limit = MAX_POSITIONS if f.name == "max_positions" else stored
        if f.name.endswith("layers"):
            limit = len(tensors) + len(aliases)  # each layer holds tensors of its own
        if not 0 <= value <= limit:
            raise UsageError(f"model.{cfg.type}.{f.name} = {value} is out of bounds")
    try:
        with torch.device("meta"):
            shape = build_model(cfg, *vocab)
    except (ValueError, TypeError, ZeroDivisionError, AssertionError, RuntimeError) as e:
        raise UsageError(f"the model config cannot be built ({e})") from e
    expected = sum(p.numel() for p in shape.parameters())  # tied weights count once
    if expected != stored:
        raise UsageError(
            f"weights do not fit the model in its config: it describes {expected} "
            f"parameters, the file stores {stored}"
        )
