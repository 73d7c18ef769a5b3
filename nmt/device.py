"""Which torch device to run on: ``auto`` picks CUDA when it is there.

Kept apart from training so that translating, scoring and serving load no training code.
"""

from __future__ import annotations

import re

import torch

from nmt.config import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available, else cpu; a CUDA device without CUDA is a config error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d{1,4})?|mps", name):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, not '{name}'")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' was asked for but CUDA is not available")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    """``cpu (N threads)`` or ``cuda:0 (GPU name)``, for reports."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"{device.type} ({threads} thread{'s' if threads != 1 else ''})"
