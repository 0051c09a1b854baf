"""kernels.sigmoid_bce against float64 PyTorch: loss, d logits, d target, extremes, bad input.

Tolerances. The loss is a mean of n fp32 terms summed in fp32: relative error ~1e-7 * log2(n)
plus the per-term rounding of exp/log, so 1e-5 relative. Gradients are elementwise,
(sigmoid(l) - t) / n, formed without cancellation, so each is within a few ulp: 1e-6 relative,
with an absolute floor of 1e-7 / n (one ulp of the largest possible term, 1 / n) for targets
strictly between 0 and 1, where t - s itself cancels.
"""

import pytest
import reference
import torch
from conftest import DEVICES
from fastgan.kernels import sigmoid_bce_backward, sigmoid_bce_forward, sigmoid_bce_with_logits

SIZES = [1, 7, 33, 127, 129, 785, 2049]


def _close(got, want, n):
    torch.testing.assert_close(got.double(), want.to(got.device), rtol=1e-6, atol=1e-7 / n)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("target", [0.0, 1.0, "tensor"])
def test_matches_float64(device, n, target):
    logits = (torch.randn(n, 1, device=device) * 4).requires_grad_()
    if target == "tensor":
        target = torch.rand(n, 1, device=device).requires_grad_()
    loss = sigmoid_bce_with_logits(logits, target)
    assert loss.shape == ()
    g = torch.rand((), device=device) + 0.5  # a non-unit upstream gradient
    (loss * g).backward()
    want, dl, dt = reference.sigmoid_bce(logits, target)
    torch.testing.assert_close(loss.double(), want.to(loss.device), rtol=1e-5, atol=0)
    _close(logits.grad, dl * g.double(), n)
    if dt is not None:
        _close(target.grad, dt * g.double(), n)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("target", [0.0, 1.0, "tensor"])
def test_extreme_logits_are_stable(device, target):
    logits = torch.tensor([1e4, -1e4, 0.0, 88.0, -88.0, 1e-30, -17.0, 30.0], device=device).requires_grad_()
    if target == "tensor":
        target = torch.tensor([0.0, 1.0, 0.5, 1.0, 0.0, 0.3, 1.0, 0.9], device=device)
    loss = sigmoid_bce_with_logits(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    want, dl, _ = reference.sigmoid_bce(logits, target)
    torch.testing.assert_close(loss.double(), want.to(loss.device), rtol=1e-5, atol=0)
    _close(logits.grad, dl, logits.numel())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("logit", [5.0, 7.6, 9.2, 15.0, 20.0, 80.0])
def test_tiny_losses_keep_relative_precision(device, logit):
    # A confident, correct logit: loss = log1p(e) with e = exp(-logit) from 7e-3 down to 2e-35.
    # Plain log(1 + e) is off by up to 6e-8 / e relative (everything once e < 6e-8).
    logits = torch.full((16,), logit, device=device)
    loss = sigmoid_bce_with_logits(logits, 1.0)
    want, _, _ = reference.sigmoid_bce(logits, 1.0)
    torch.testing.assert_close(loss.double(), want.to(loss.device), rtol=1e-5, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_launchers_write_every_element(device):
    n = 129
    logits = torch.randn(n, device=device) * 3
    loss = torch.full((1,), float("nan"), device=device)
    dlogits = torch.full((n,), float("nan"), device=device)
    sigmoid_bce_forward(logits, None, 1.0, loss, dlogits)
    want, dl, _ = reference.sigmoid_bce(logits, 1.0)
    torch.testing.assert_close(loss[0].double(), want.to(loss.device), rtol=1e-5, atol=0)
    _close(dlogits, dl, n)
    out, dtarget = torch.full_like(logits, float("nan")), torch.full_like(logits, float("nan"))
    grad = torch.tensor([2.0], device=device)
    sigmoid_bce_backward(dlogits, logits, grad, out, dtarget)
    _close(out, 2 * dl, n)
    _close(dtarget, -2 * logits.double() / n, n)


@pytest.mark.parametrize(
    "logits, target, error, message",
    [
        (torch.zeros(0), 1.0, ValueError, "logits are empty"),
        (torch.randn(4).double(), 1.0, TypeError, "logits must be a float32 tensor"),
        (torch.randn(4), torch.rand(5), ValueError, r"target has shape \(5,\), expected \(4,\)"),
        (torch.randn(4), torch.rand(4).double(), TypeError, "target must be float32"),
        (torch.randn(4, 2).t(), 1.0, ValueError, "logits must be contiguous"),
    ],
)
def test_rejects_bad_arguments(logits, target, error, message):
    loss, dl = torch.empty(1), torch.empty(logits.shape)
    with pytest.raises(error, match=message):
        if torch.is_tensor(target):
            sigmoid_bce_with_logits(logits, target)
        else:
            sigmoid_bce_forward(logits, None, target, loss, dl)


def test_backward_rejects_bad_grad():
    logits = torch.randn(4)
    with pytest.raises(ValueError, match="grad must be a one-element float32 tensor"):
        sigmoid_bce_backward(torch.randn(4), logits, torch.ones(2), torch.empty(4))
