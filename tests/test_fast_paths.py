"""The fast inference paths (bf16 autocast, int8 quantization) translate like plain fp32.

On a model that has learned its task (the reversal models of ``test_overfit``), the
optimized paths must give exactly the fp32 outputs, greedy and beam.
"""

from __future__ import annotations

import pytest
import torch

from nmt.inference.quantize import quantize
from nmt.inference.search import beam_search, greedy_search
from tests.conftest import BACKBONES
from tests.test_overfit import LIMITS, trained_reversal_model


def _outputs(model, batch) -> tuple[list, list]:
    greedy = [h.tokens for h in greedy_search(model, batch.src, batch.src_mask, LIMITS)]
    beam = [hs[0].tokens for hs in beam_search(model, batch.src, batch.src_mask, LIMITS, beam=4)]
    return greedy, beam


@pytest.mark.parametrize("backbone", BACKBONES)
def test_bf16_autocast_matches_fp32(backbone: str) -> None:
    model, batch, tgt, _ = trained_reversal_model(backbone)
    plain = _outputs(model, batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = _outputs(model, batch)
    assert plain[0] == tgt and fast == plain


@pytest.mark.parametrize("backbone", BACKBONES)
def test_int8_quantization_matches_fp32(backbone: str) -> None:
    model, batch, tgt, _ = trained_reversal_model(backbone)
    plain = _outputs(model, batch)
    small = quantize(model, "int8")
    assert small is not model and any("quantized" in type(m).__module__ for m in small.modules())
    assert _outputs(small, batch) == plain
