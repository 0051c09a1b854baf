"""kernels.OPS, the fused Triton ops as differentiable functions a model can call (linear,
linear_relu, linear_sigmoid, sigmoid_bce_with_logits): the seed's iteration written with them
trains like the one written with torch's ops.

Tolerance. Both compute in IEEE fp32 and differ only in summation order (~1e-7 relative per op);
through Adam (which moves every weight by ~lr whatever the gradient's size) two iterations stay
near 1e-6: rtol 1e-5, atol 1e-6.
"""

import pytest
import torch
from conftest import DEVICES
from helpers import assert_adam_params_close

from fastgan import kernels, model


@pytest.mark.parametrize("device", DEVICES)
def test_ops_step_matches_eager_step(device):
    """The seed iteration (fastgan.model.AdamStep) with its forward ops swapped for kernels.OPS:
    the same losses and updates as with torch's."""
    torch.manual_seed(0)
    batches = [tuple(t.to(device) for t in (torch.rand(6, 784), torch.rand(6, 100) * 2 - 1, torch.rand(6, 100) * 2 - 1))
               for _ in range(2)]
    eager = model.AdamStep(model.init_params(5, device), lr=1e-3)
    fused = model.AdamStep(model.init_params(5, device), lr=1e-3, ops=kernels.OPS)
    for b in batches:
        torch.testing.assert_close(fused(*b), eager(*b), rtol=1e-5, atol=1e-6)
    for k in model.SHAPES:
        assert_adam_params_close(fused.params[k], eager.params[k], steps=len(batches), name=k)
