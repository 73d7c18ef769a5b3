"""The fused label-smoothed loss and the packed-mask dropout behave like PyTorch's own."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nmt.models.dropout import Dropout, add, dropout, keep_mask
from nmt.training.loss import CHUNK_ROWS, smoothed_cross_entropy

PAD = 1


def _reference(logits, target, eps):
    return F.cross_entropy(
        logits.float(), target, ignore_index=PAD, label_smoothing=eps, reduction="sum"
    )


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_loss_and_gradient_equal_cross_entropy(eps, dtype):
    torch.manual_seed(0)
    rows = CHUNK_ROWS * 2 + 37  # several chunks and a ragged last one
    logits = (torch.randn(rows, 50) * 4).to(dtype).requires_grad_()
    target = torch.randint(0, 50, (rows,))
    target[::5] = PAD
    ours = smoothed_cross_entropy(logits, target, PAD, eps)
    ours.backward(torch.tensor(0.7))
    grad_ours, logits.grad = logits.grad.clone(), None
    ref = _reference(logits, target, eps)
    (ref * 0.7).backward()
    assert grad_ours.dtype == dtype
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    atol = 1e-6 if dtype == torch.float32 else 4e-3  # bf16: one rounding of the gradient
    torch.testing.assert_close(grad_ours.float(), logits.grad.float(), atol=atol, rtol=0.0)
    assert grad_ours[::5].abs().max() == 0.0  # padding positions get no gradient


def test_keep_mask_rate_and_reproducibility():
    torch.manual_seed(3)
    mask = keep_mask(torch.Size([1000, 1001]), 0.1)
    assert mask.shape == (1000, 1001) and mask.dtype == torch.bool
    assert mask.float().mean().item() == pytest.approx(0.9, abs=0.002)
    torch.manual_seed(3)
    assert torch.equal(keep_mask(torch.Size([1000, 1001]), 0.1), mask)
    assert not torch.equal(keep_mask(torch.Size([1000, 1001]), 0.1), mask)


def test_dropout_scales_kept_values_and_passes_gradient():
    torch.manual_seed(0)
    x = torch.randn(300, 400, requires_grad=True)
    y = dropout(x, 0.25, training=True)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.75, abs=0.01)
    torch.testing.assert_close(y[kept], x[kept] / 0.75)
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.75)


def test_dropout_is_identity_in_eval_and_at_zero():
    x = torch.randn(10, 10)
    layer = Dropout(0.5).eval()
    assert torch.equal(layer(x), x)
    assert torch.equal(dropout(x, 0.0, training=True), x)
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)


def test_residual_add_is_x_plus_dropout_of_y_with_the_same_mask():
    torch.manual_seed(0)
    x = torch.randn(200, 300, requires_grad=True)  # fp32 residual stream
    y = torch.randn(200, 300).bfloat16().requires_grad_()  # a bf16 sublayer output
    torch.manual_seed(5)
    out = add(x, y, 0.3, training=True)
    torch.manual_seed(5)
    keep = keep_mask(y.shape, 0.3)  # the mask add() drew from the same generator state
    assert out.dtype == torch.float32  # promoted, as x + y is
    assert keep.float().mean().item() == pytest.approx(0.7, abs=0.01)
    torch.testing.assert_close(out, x + y.float() * keep / 0.7)
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))
    torch.testing.assert_close(y.grad.float(), keep.float() / 0.7, atol=4e-3, rtol=0.0)


def test_residual_add_is_plain_sum_in_eval_and_at_zero():
    x, y = torch.randn(10, 10), torch.randn(10, 10)
    layer = Dropout(0.5).eval()
    assert torch.equal(layer.add(x, y), x + y)
    assert torch.equal(add(x, y, 0.0, training=True), x + y)
    assert torch.equal(add(x, y, 1.0, training=True), x)
