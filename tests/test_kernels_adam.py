"""kernels.adam_update against torch.optim.Adam over several steps.

Tolerance: the kernel follows torch's operation order in fp32, with 1 - beta and the bias
terms rounded from float64 like torch's Python-float scalars; what remains is fp32 contraction
(fused multiply-add) choices: 1e-6 relative, with a floor of 1e-6 of the tensor's largest value
where the lerp m + (1 - b1)(g - m) cancels (g near m) and the result keeps only the operands'
absolute rounding. A wrong constant or order would show at 1e-3 or more.
"""

import pytest
import torch
from conftest import DEVICES

from kernels import adam_bias_terms, adam_update


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [1, 7, 1025, 5000])
def test_matches_torch_adam(device, n):
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    p = torch.randn(n, device=device)
    ref = p.clone().requires_grad_()
    opt = torch.optim.Adam([ref], lr=lr, betas=(b1, b2), eps=eps)
    m, v = torch.zeros(n, device=device), torch.zeros(n, device=device)
    bias = adam_bias_terms(torch.arange(1, 6), lr, b1, b2).float().to(device)
    for t in range(5):
        g = torch.randn(n, device=device) * 10 ** torch.randint(-6, 1, (n,), device=device)
        ref.grad = g.clone()
        opt.step()
        adam_update(p, g, m, v, bias[t], b1, b2, eps)
        state = opt.state[ref]
        for got, want in ((p, ref.detach()), (m, state["exp_avg"]), (v, state["exp_avg_sq"])):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6 * want.abs().max().item())


def test_bias_terms():
    terms = adam_bias_terms(torch.tensor([1, 10, 1000000]), 1e-3, 0.9, 0.999)
    torch.testing.assert_close(terms[0], torch.tensor([1e-3 / 0.1, 0.001**0.5], dtype=torch.float64))
    torch.testing.assert_close(terms[2], torch.tensor([1e-3, 1.0], dtype=torch.float64))


def test_rejects_bad_arguments():
    p = torch.zeros(4)
    with pytest.raises(ValueError, match=r"g has shape \(3,\), expected \(4,\)"):
        adam_update(p, torch.zeros(3), torch.zeros(4), torch.zeros(4), torch.ones(2), 0.9, 0.999, 1e-8)
    with pytest.raises(ValueError, match="beta1, beta2 < 1"):
        adam_update(p, p.clone(), p.clone(), p.clone(), torch.ones(2), 1.0, 0.999, 1e-8)
