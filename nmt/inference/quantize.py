"""int8 dynamic quantization for CPU inference.

Weights of linear and recurrent layers are stored as int8 and activations are quantized
on the fly per batch (dynamic quantization, as in Wu et al. 2016, sec. 6, for GNMT
inference): about 4x smaller weights and faster matrix products on CPUs with int8 dot
products. Training is unaffected; this is applied to a loaded model before search.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from nmt.config import ConfigError

DYNAMIC_QUANTIZATIONS = ("none", "int8")


def quantize(model: nn.Module, kind: str) -> nn.Module:
    """Return ``model`` (kind ``none``) or an int8 dynamically quantized copy (CPU only)."""
    if kind not in DYNAMIC_QUANTIZATIONS:
        raise ConfigError(
            f"--quantize must be one of {', '.join(DYNAMIC_QUANTIZATIONS)}, not '{kind}'"
        )
    if kind == "none":
        return model
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ConfigError("--quantize int8 runs on the CPU only (use --device cpu)")
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch marks the quantized-tensor API as deprecated
        warnings.simplefilter("ignore")
        layers = {nn.Linear, nn.LSTM, nn.GRU}
        return quantize_dynamic(model, layers, dtype=torch.qint8).eval()
