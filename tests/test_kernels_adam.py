"""kernels.adam_update against torch.optim.Adam over several steps.

Tolerance: the kernel follows torch's operation order in fp32, each operation rounded once
(IEEE square root and division, no FMA contraction), with 1 - beta and the bias terms rounded
from float64 like torch's Python-float scalars; what remains is torch's own contraction choices
inside one op (its CUDA kernels may fuse lerp/addcmul/addcdiv's multiply-add): 1e-6 relative, with a floor of 1e-6 of the tensor's largest value
where the lerp m + (1 - b1)(g - m) cancels (g near m) and the result keeps only the operands'
absolute rounding. A wrong constant or order would show at 1e-3 or more.
"""

import pytest
import torch
from conftest import DEVICES
from fastgan.kernels import adam_terms, adam_update


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [1, 7, 1025, 5000])
def test_matches_torch_adam(device, n):
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    p = torch.randn(n, device=device)
    ref = p.clone().requires_grad_()
    opt = torch.optim.Adam([ref], lr=lr, betas=(b1, b2), eps=eps)
    m, v = torch.zeros(n, device=device), torch.zeros(n, device=device)
    hyper = adam_terms(torch.arange(1, 6), lr, b1, b2).float().to(device)[:, 0]  # (steps, 3): one run
    for t in range(5):
        g = torch.randn(n, device=device) * 10 ** torch.randint(-6, 1, (n,), device=device)
        ref.grad = g.clone()
        opt.step()
        adam_update(p, g, m, v, hyper[t], b2, eps)
        state = opt.state[ref]
        for got, want in ((p, ref.detach()), (m, state["exp_avg"]), (v, state["exp_avg_sq"])):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6 * want.abs().max().item())


def test_terms():
    terms = adam_terms(torch.tensor([1, 10, 1000000]), 1e-3, 0.9, 0.999)
    assert terms.shape == (3, 1, 3)
    torch.testing.assert_close(terms[0, 0], torch.tensor([1e-3 / 0.1, 0.001**0.5, 0.1], dtype=torch.float64))
    torch.testing.assert_close(terms[2, 0], torch.tensor([1e-3, 1.0, 0.1], dtype=torch.float64))
    runs = adam_terms(torch.tensor([1, 2]), [1e-3, 2e-4], [0.9, 0.5], 0.999)
    assert runs.shape == (2, 2, 3)
    torch.testing.assert_close(runs[1, 1], torch.tensor([2e-4 / (1 - 0.25), (1 - 0.999**2) ** 0.5, 0.5], dtype=torch.float64))


@pytest.mark.parametrize("device", DEVICES)
def test_runs_in_one_launch_equal_each_run_alone(device):
    """Three runs with their own lr and beta1 in one launch give bitwise each run's own update."""
    R, n = 3, 1500
    p, g = torch.randn(R, n, device=device), torch.randn(R, n, device=device)
    m, v = torch.randn(R, n, device=device) * 0.1, torch.rand(R, n, device=device) * 0.01
    hyper = adam_terms(torch.tensor([7]), [1e-3, 2e-4, 5e-4], [0.9, 0.5, 0.0], 0.999).float().to(device)[0]
    alone = [t.clone() for t in (p, m, v)]
    adam_update(p, g, m, v, hyper, 0.999, 1e-8)
    for r in range(R):
        pr, mr, vr = (t[r].clone() for t in alone)
        adam_update(pr, g[r], mr, vr, hyper[r], 0.999, 1e-8)
        assert torch.equal(pr, p[r]) and torch.equal(mr, m[r]) and torch.equal(vr, v[r])


def test_rejects_bad_arguments():
    p = torch.zeros(4)
    with pytest.raises(ValueError, match=r"g has shape \(3,\), expected \(4,\)"):
        adam_update(p, torch.zeros(3), torch.zeros(4), torch.zeros(4), torch.ones(3), 0.999, 1e-8)
    with pytest.raises(ValueError, match="beta2 < 1"):
        adam_update(p, p.clone(), p.clone(), p.clone(), torch.ones(3), 1.0, 1e-8)
    with pytest.raises(ValueError, match=r"hyper must hold .* shape \(1, >= 3\), got \(1, 2\)"):
        adam_update(p, p.clone(), p.clone(), p.clone(), torch.ones(2), 0.999, 1e-8)


@pytest.mark.parametrize("device", DEVICES)
def test_gradient_partials_are_added_in_order(device):
    """g as P = 3 partial slots (the split-M weight gradients): the same update, bitwise, as the
    gradient ((g0 + g1) + g2) summed beforehand in that order, for 2 runs at once."""
    R, n, b2, eps = 2, 1500, 0.999, 1e-8
    parts = torch.randn(3, R, n, device=device)
    hyper = adam_terms(torch.tensor([3]), [1e-3, 2e-4], [0.9, 0.5], b2).float().to(device)[0]
    p, m, v = torch.randn(R, n, device=device), torch.randn(R, n, device=device), torch.rand(R, n, device=device)
    p2, m2, v2 = p.clone(), m.clone(), v.clone()
    adam_update(p, parts, m, v, hyper, b2, eps)
    adam_update(p2, (parts[0] + parts[1]) + parts[2], m2, v2, hyper, b2, eps)
    assert torch.equal(p, p2) and torch.equal(m, m2) and torch.equal(v, v2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [1, 33, 1025])
def test_ema_follows_the_updated_parameters(device, n):
    """With ema: the Adam update unchanged (bitwise), and ema <- ema + w (p - ema) with the new p,
    w = hyper[3], per run (w = 0: the EMA stays put). In float64 the same three rounded
    operations can differ by an ulp of ema's scale per step: 1e-6 relative to the largest value."""
    R = 2
    p, g = torch.randn(R, n, device=device), torch.randn(R, n, device=device)
    m, v = torch.randn(R, n, device=device) * 0.1, torch.rand(R, n, device=device) * 0.01
    ema = torch.randn(R, n, device=device)
    hyper = torch.zeros(R, 4, device=device)
    hyper[:, :3] = adam_terms(torch.tensor([3]), [1e-3, 2e-4], 0.9, 0.999).float().to(device)[0]
    hyper[:, 3] = torch.tensor([1 - 0.999, 0.0])
    plain = [t.clone() for t in (p, m, v)]
    ema0 = ema.clone()
    adam_update(p, g, m, v, hyper, 0.999, 1e-8, ema=ema)
    adam_update(*plain[:1], g, *plain[1:], hyper, 0.999, 1e-8)
    assert all(torch.equal(a, b) for a, b in zip((p, m, v), plain))
    want = ema0.double() + hyper[:, 3:].double() * (p.double() - ema0.double())
    torch.testing.assert_close(ema.double(), want, rtol=0, atol=1e-6 * want.abs().max().item())
    assert torch.equal(ema[1], ema0[1]) and not torch.equal(ema[0], ema0[0])
    with pytest.raises(ValueError, match=r"1 - EMA beta\] per run, contiguous: shape \(2, >= 4\)"):
        adam_update(p, g, m, v, hyper[:, :3], 0.999, 1e-8, ema=ema)
