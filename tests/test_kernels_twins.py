"""kernels.twins, the CPU twin of each launch the Triton trainer makes, against the float64
references (tests/reference.py) and torch.optim.Adam: outputs and every gradient, odd shapes,
one run and three with a leading run axis, gathered real rows, partial-sum slots (slot 0 written
in full, later slots left alone, input slots added in order), the R1 penalty, G's EMA, poisoned
outputs, and one line for bad input.

Tolerances: the twins compute in IEEE fp32 with MKL's products (sums of up to K terms): 2e-6
normwise relative for the products' outputs and weight gradients (well inside K * 2^-24 for
K <= 785), 1e-5 for the losses (fp32 means of up to 256 log-terms); bias gradients are sums that
can cancel, so they are measured against the sum of their terms' magnitudes; Adam as
test_kernels_adam (1e-6 relative).
"""

import pytest
import reference
import torch
from fastgan.kernels import ACT_NONE, ACT_RELU, ACT_SIGMOID, adam_terms
from fastgan.kernels import twins as T
from helpers import d_inputs, rel_err

NAN = float("nan")
ACTS = [ACT_NONE, ACT_RELU, ACT_SIGMOID]


def _poisoned(*shape):
    return torch.full(shape, NAN)


def _each_run(runs, fn):
    """fn(r) for each run r of `runs` (() for one run without the axis)."""
    return [fn(r) for r in range(runs[0] if runs else 1)]


@pytest.mark.parametrize("runs", [(), (3,)], ids=["one-run", "three-runs"])
@pytest.mark.parametrize("M,K,N", [(1, 7, 33), (33, 129, 7), (129, 785, 128), (17, 1024, 65)])
@pytest.mark.parametrize("act", ACTS)
def test_forward_matches_float64(runs, M, K, N, act):
    x, w, b = torch.randn(*runs, M, K), torch.randn(*runs, K, N) / K**0.5, torch.randn(*runs, N)
    y = _poisoned(*runs, M, N)
    T.linear_act_forward(x, w, b, y, act)
    for r in range(runs[0] if runs else 1):
        pick = (lambda t: t[r]) if runs else (lambda t: t)
        *_, want = reference.linear_act(pick(x), pick(w), pick(b), act)
        assert rel_err(pick(y), want.detach()) < 2e-6


@pytest.mark.parametrize("runs", [(), (3,)], ids=["one-run", "three-runs"])
def test_forward_gathers_real_rows_and_writes_raw_slots(runs):
    """rows=(images, idx): the input is [images[idx]; x]; partials: slot 0 gets x @ w alone
    (no bias, no activation; its reader finishes it), slot 1 is left as it was."""
    K, N, G, Mx = 785, 128, 5, 7
    images, x = torch.rand(40, K), torch.rand(*runs, Mx, K)
    idx = torch.randint(0, 40, (*runs, G))
    w, b = torch.randn(*runs, K, N) / K**0.5, torch.randn(*runs, N)
    y, raw = _poisoned(*runs, G + Mx, N), _poisoned(2, *runs, G + Mx, N)
    T.linear_act_forward(x, w, b, y, ACT_RELU, rows=(images, idx))
    T.linear_act_forward(x, w, b, raw, ACT_RELU, rows=(images, idx), partials=True)
    assert torch.isnan(raw[1]).all()
    for r in range(runs[0] if runs else 1):
        pick = (lambda t: t[r]) if runs else (lambda t: t)
        full = torch.cat([images[pick(idx)], pick(x)]).double()
        assert rel_err(pick(y), torch.relu(full @ pick(w).double() + pick(b).double())) < 2e-6
        assert rel_err(pick(raw[0]), full @ pick(w).double()) < 2e-6


@pytest.mark.parametrize("runs", [(), (3,)], ids=["one-run", "three-runs"])
@pytest.mark.parametrize("M,K,N", [(1, 7, 33), (33, 129, 7), (129, 785, 128), (17, 1024, 65)])
@pytest.mark.parametrize("act", ACTS)
def test_backward_matches_float64(runs, M, K, N, act):
    x, w, b = torch.randn(*runs, M, K), torch.randn(*runs, K, N) / K**0.5, torch.randn(*runs, N)
    y = torch.empty(*runs, M, N)
    T.linear_act_forward(x, w, b, y, act)
    dy = torch.randn(*runs, M, N)
    dx, dw, db = _poisoned(*runs, M, K), _poisoned(*runs, K, N), _poisoned(*runs, N)
    T.linear_act_backward(x, w, y, dy, dx, dw, db, act)
    for r in range(runs[0] if runs else 1):
        pick = (lambda t: t[r]) if runs else (lambda t: t)
        xd, wd, bd, yd = reference.linear_act(pick(x), pick(w), pick(b), act)
        yd.backward(pick(dy).double())
        assert rel_err(pick(dx), xd.grad) < 2e-6 and rel_err(pick(dw), wd.grad) < 2e-6
        g = bd.grad  # db: against the magnitudes of its terms
        terms = (torch.autograd.grad(reference.ACTS[act](xd @ wd + bd), bd, pick(dy).double().abs())[0]
                 if act != ACT_RELU else g.abs())
        assert ((pick(db).double() - g).norm() / terms.norm().clamp_min(1e-30)) < 2e-6


def test_backward_slots_in_and_out():
    """dy with 3 slots is their sum in order; partials: slot 0 of dx, dw, db written, slot 1 kept."""
    M, K, N = 33, 100, 128
    x, w, b = torch.randn(M, K), torch.randn(K, N) / 10, torch.randn(N)
    y = torch.empty(M, N)
    T.linear_act_forward(x, w, b, y, ACT_RELU)
    dy = torch.randn(3, M, N)
    outs = [_poisoned(2, M, K), _poisoned(2, K, N), _poisoned(2, N)]
    T.linear_act_backward(x, w, y, dy, *outs, ACT_RELU, partials=True, dy_partials=True)
    want = [torch.empty(M, K), torch.empty(K, N), torch.empty(N)]
    T.linear_act_backward(x, w, y, (dy[0] + dy[1]) + dy[2], *want, ACT_RELU)
    for got, ref in zip(outs, want):
        assert torch.equal(got[0], ref) and torch.isnan(got[1]).all()


def _d_outputs(slots, K, H, runs=()):
    return [_poisoned(slots, *runs, *s) for s in ((3,), (K, H), (H,), (H, 1), (1,))]


@pytest.mark.parametrize("M,H,K,split", [(2, 7, 33, 1), (33, 128, 785, 17), (129, 33, 100, 64), (256, 128, 784, 128),
                                         (33, 300, 65, 17), (17, 1024, 33, 4)])  # and wider than the kernels' one block
def test_d_grad_matches_float64(M, H, K, split):
    x, _, _, w2, b2, h = d_inputs(M, H, K, "cpu")
    got = _d_outputs(2, K, H)
    T.d_grad(x, w2, b2, *got, split=split, h=h)
    assert all(torch.isnan(t[1]).all() for t in got)
    want = reference.d_step(x, h, w2, b2, split)
    losses, dw1, db1, dw2, db2 = (t[0].double() for t in got)
    torch.testing.assert_close(losses, want["losses"], rtol=1e-5, atol=0)
    assert rel_err(dw1, want["dw1"]) < 2e-6 and rel_err(dw2, want["dw2"]) < 2e-6
    for name, g in (("db1", db1), ("db2", db2)):
        assert ((g - want[name]).norm() / want[f"{name}_terms"].norm().clamp_min(1e-30)) < 2e-6, name


def test_d_grad_gathers_real_rows_finishes_d1_slots_and_adds_r1_per_run():
    """Three runs, each with its own gamma (0 for one): real rows gathered ahead of x, D1's output
    finished from two K-chunk slots, and the R1 penalty's gradients against float64 autograd."""
    R, B, H, K = 3, 16, 128, 784
    images = torch.rand(100, K)
    idx = torch.randint(0, 100, (R, B))
    fake = torch.rand(R, B, K)
    w1 = torch.randn(R, K, H) / (K / 2) ** 0.5
    b1, w2, b2 = torch.randn(R, H) * 0.1, torch.randn(R, H, 1) / (H / 2) ** 0.5, torch.randn(R, 1)
    gammas = torch.tensor([1.0, 0.0, 10.0])
    x = torch.cat([images[idx], fake], dim=1)  # (R, 2B, K)
    part = x @ w1
    pre = torch.stack([part * 0.25, part * 0.75])  # two raw slots, their sum the product
    got = _d_outputs(1, K, H, (R,))
    T.d_grad(fake, w2, b2, *got, split=B, pre=(pre, b1), rows=(images, idx), r1=gammas, w1=w1)
    for r in range(R):
        h = torch.relu(pre[0, r] + pre[1, r] + b1[r])
        want = reference.d_step(x[r], h, w2[r], b2[r], B)
        r1_w1, r1_w2 = reference.r1_penalty(x[r], h, w1[r], w2[r], B, gammas[r].item())
        assert rel_err(got[1][0, r], want["dw1"] + r1_w1) < 2e-5
        assert rel_err(got[3][0, r], want["dw2"] + r1_w2) < 2e-5
        torch.testing.assert_close(got[0][0, r].double(), want["losses"], rtol=1e-5, atol=0)


@pytest.mark.parametrize("M,H,K", [(1, 7, 33), (33, 128, 785), (128, 128, 784), (7, 300, 65), (17, 1024, 33)])
@pytest.mark.parametrize("t", [1.0, 0.0])
def test_d_input_grad_matches_float64(M, H, K, t):
    _, w1, _, w2, b2, h = d_inputs(M, H, K, "cpu")
    losses, dx = _poisoned(2, 1), _poisoned(M, K)
    T.d_input_grad(h, w1, w2, b2, losses, dx, t=t)
    want_loss, want_dx = reference.d_input(h, w1, w2, b2, t)
    torch.testing.assert_close(losses[0, 0].double(), want_loss, rtol=1e-5, atol=0)
    assert torch.isnan(losses[1]).all() and rel_err(dx, want_dx) < 2e-6


@pytest.mark.parametrize("n", [1, 7, 1025, 5000])
def test_adam_matches_torch_adam(n):
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    p = torch.randn(n)
    ref = p.clone().requires_grad_()
    opt = torch.optim.Adam([ref], lr=lr, betas=(b1, b2), eps=eps)
    m, v = torch.zeros(n), torch.zeros(n)
    hyper = adam_terms(torch.arange(1, 6), lr, b1, b2).float()[:, 0]
    for t in range(5):
        g = torch.randn(n) * 10 ** torch.randint(-6, 1, (n,))
        ref.grad = g.clone()
        opt.step()
        T.adam_update(p, g[None], m, v, hyper[t], b2, eps)  # g with one slot
        state = opt.state[ref]
        for got, want in ((p, ref.detach()), (m, state["exp_avg"]), (v, state["exp_avg_sq"])):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6 * want.abs().max().item())


def test_adam_runs_slots_and_ema():
    """Three runs with their own lr, beta1 and EMA weight: gradient slots added in order, each
    run's update and EMA (ema + w (p - ema)) as computed for that run alone in float64."""
    R, n = 3, 1500
    p, g = torch.randn(R, n), torch.randn(2, R, n)
    m, v, ema = torch.randn(R, n) * 0.1, torch.rand(R, n) * 0.01, torch.randn(R, n)
    hyper = torch.zeros(R, 4)
    hyper[:, :3] = adam_terms(torch.tensor([7]), [1e-3, 2e-4, 5e-4], [0.9, 0.5, 0.0], 0.999).float()[0]
    hyper[:, 3] = torch.tensor([0.001, 0.0, 0.5])
    p0, m0, v0, e0 = (t.double() for t in (p, m, v, ema))
    T.adam_update(p, g, m, v, hyper, 0.999, 1e-8, ema=ema)
    gs = (g[0] + g[1]).double()
    h = hyper.double()
    m1 = m0 + h[:, 2:3] * (gs - m0)
    v1 = 0.999 * v0 + 0.001 * gs * gs
    p1 = p0 - h[:, 0:1] * m1 / (v1.sqrt() / h[:, 1:2] + 1e-8)
    for got, want in ((m, m1), (v, v1), (p, p1), (ema, e0 + h[:, 3:4] * (p1 - e0))):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("call, message", [
    (lambda: T.linear_act_forward(torch.rand(4, 5), torch.rand(6, 3), torch.rand(3), torch.empty(4, 3), ACT_RELU),
     r"linear_act_forward \(CPU\): w must be torch.float32 on the CPU of shape \(5, 3\) .* got torch.float32 on cpu of "
     r"shape \(6, 3\)$"),
    (lambda: T.linear_act_forward(torch.rand(4, 5), torch.rand(5, 3), torch.rand(3), torch.empty(4, 3, dtype=torch.float64),
                                  ACT_RELU), r"y must be torch.float32"),
    (lambda: T.linear_act_forward(torch.rand(4, 5), torch.rand(5, 3), torch.rand(3), torch.empty(4, 3), 7),
     r"act must be ACT_NONE, ACT_RELU or ACT_SIGMOID"),
    (lambda: T.linear_act_forward(torch.rand(4, 5), torch.rand(5, 3), torch.rand(3), torch.empty(4, 3), ACT_RELU,
                                  precision="fp16"), r"precision must be one of"),
    (lambda: T.linear_act_backward(torch.rand(4, 5), torch.rand(5, 3), torch.rand(4, 3), torch.rand(4, 3), None, None,
                                   None, ACT_RELU), r"nothing to compute"),
    (lambda: T.d_grad(torch.rand(4, 5), torch.rand(3, 1), torch.rand(1), *_d_outputs(1, 5, 3), split=4,
                      h=torch.rand(4, 3)), r"split must be in 1\.\.3"),
    (lambda: T.d_grad(torch.rand(4, 5), torch.rand(3, 1), torch.rand(1), *_d_outputs(1, 5, 3), split=2),
     r"pass D1's output h, or h=None and pre="),
    (lambda: T.d_input_grad(torch.rand(4, 3), torch.rand(5, 3), torch.rand(3, 1), torch.rand(1), torch.empty(1, 1),
                            torch.empty(4, 6)), r"dx must be"),
    (lambda: T.adam_update(torch.rand(5), torch.rand(5), torch.rand(5), torch.rand(5), torch.rand(2), 0.999, 1e-8),
     r"hyper must hold"),
])
def test_bad_input_is_one_line(call, message):
    with pytest.raises((ValueError, TypeError), match=message) as e:
        call()
    assert "\n" not in str(e.value)


def test_trusted_computes_the_same_and_checks_again_after_it():
    """Inside trusted() the checks are skipped (run-first tensors, as the trainer passes them):
    the same outputs bitwise; after it, even one left by an error, bad input is refused again."""
    x, w, b = torch.rand(1, 9, 5), torch.randn(1, 5, 3), torch.randn(1, 3)
    checked, fast = _poisoned(1, 9, 3), _poisoned(1, 9, 3)
    T.linear_act_forward(x, w, b, checked, ACT_SIGMOID)
    with T.trusted():
        T.linear_act_forward(x, w, b, fast, ACT_SIGMOID)
    assert torch.equal(checked, fast)
    with pytest.raises(RuntimeError), T.trusted():
        T.linear_act_forward(x, torch.randn(1, 6, 3), b, fast, ACT_SIGMOID)  # torch's own error, unchecked
    with pytest.raises(ValueError, match=r"w must be torch.float32 on the CPU of shape \(5, 3\)"):
        T.linear_act_forward(x, torch.randn(1, 6, 3), b, fast, ACT_SIGMOID)


def test_losses_none_skips_them_and_changes_no_gradient():
    """d_grad and d_input_grad with losses=None (kernels.twins' LOSSES): bitwise the gradients
    of the call with losses."""
    M, H, K, split = 9, 7, 11, 4
    x, h = torch.rand(1, M, K), torch.rand(1, M, H)
    w1, w2, b2 = torch.randn(1, K, H), torch.randn(1, H, 1), torch.randn(1, 1)
    with_losses, without = _d_outputs(1, K, H), _d_outputs(1, K, H)
    T.d_grad(x, w2, b2, *with_losses, split=split, h=h)
    T.d_grad(x, w2, b2, None, *without[1:], split=split, h=h)
    assert torch.isfinite(with_losses[0][0]).all()
    assert all(torch.equal(a, b) for a, b in zip(with_losses[1:], without[1:]))
    dx, dx_none, losses = _poisoned(1, M, K), _poisoned(1, M, K), _poisoned(1, 1, 1)
    T.d_input_grad(h, w1, w2, b2, losses, dx)
    T.d_input_grad(h, w1, w2, b2, None, dx_none)
    assert torch.equal(dx, dx_none) and torch.isfinite(losses).all()
