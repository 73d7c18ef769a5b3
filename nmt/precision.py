"""Mixed precision: autocast contexts and the fp16 gradient scaler, one place for all callers.

- ``fp32``: no autocast.
- ``bf16``: autocast to bfloat16 on CPU or CUDA. bf16 keeps fp32's exponent range, so
  gradients cannot underflow and no loss scaling is needed.
- ``fp16``: autocast to float16, CUDA only (CPU autocast has no useful fp16 kernels).
  fp16's narrow exponent range makes small gradients underflow to zero, hence the
  dynamic loss scaling of Micikevicius et al. (2018), "Mixed Precision Training",
  done by :class:`torch.amp.GradScaler`.

Search and validation use the same contexts; backbones return float32 log-probabilities
whatever the autocast dtype (:func:`nmt.models.base.log_softmax_fp32`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from nmt.config import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse precisions the device cannot run, before any work starts."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not '{precision}'")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"precision fp16 needs a CUDA device (this run uses {device}); use bf16 on CPU"
        )


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """Autocast for ``precision`` (matrix work in low precision, softmax/reductions in fp32)."""
    if precision in _DTYPES:
        return torch.autocast(device.type, dtype=_DTYPES[precision])
    return nullcontext()


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A loss scaler that is active for fp16 only (a pass-through otherwise)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
