import math

import pytest
import torch

from fastgan import model


def test_shapes_and_forward():
    p = model.init_params(0, "cpu")
    assert {k: tuple(v.shape) for k, v in p.items()} == model.SHAPES
    z = torch.rand(5, 100) * 2 - 1
    x = model.generator(p, z)
    assert x.shape == (5, 784) and x.min() >= 0 and x.max() <= 1
    assert model.discriminator(p, x).shape == (5, 1)


def test_init_statistics():
    p = model.init_params(0, "cpu")
    for name, shape in model.SHAPES.items():
        t = p[name].detach()
        if len(shape) == 1:
            assert torch.count_nonzero(t) == 0, f"{name}: biases start at zero"
            continue
        want = 1.0 / math.sqrt(shape[0] / 2.0)
        n = t.numel()
        # The sample std of n normal draws has relative standard error 1/sqrt(2n); allow 5 of those.
        assert abs(t.std().item() / want - 1) < 5 / math.sqrt(2 * n), name
        assert abs(t.mean().item()) < 5 * want / math.sqrt(n), name


def test_init_is_seeded():
    a, b, c = model.init_params(1, "cpu"), model.init_params(1, "cpu"), model.init_params(2, "cpu")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["G_W1"], c["G_W1"])


# --- one eager step against the seed's math, written out by hand in float64 -------------------


def _bce(logits, target):
    return (torch.clamp(logits, min=0) - logits * target + torch.log1p(torch.exp(-logits.abs()))).mean()


def _sig(t):
    return 1 / (1 + torch.exp(-t))


def _adam(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    return p - lr * m_hat / (v_hat.sqrt() + eps), m, v


def _d_grads(P, x):
    """Forward of D from input x; returns logits and a function mapping dlogits to grads."""
    a1 = x @ P["D_W1"] + P["D_b1"]
    h = torch.clamp(a1, min=0)
    logit = h @ P["D_W2"] + P["D_b2"]

    def back(dlogit):
        grads = {"D_W2": h.T @ dlogit, "D_b2": dlogit.sum(0)}
        dh = dlogit @ P["D_W2"].T
        da1 = dh * (a1 > 0)
        grads.update({"D_W1": x.T @ da1, "D_b1": da1.sum(0)})
        return grads, da1 @ P["D_W1"].T

    return logit, back


def _g_forward(P, z):
    a1 = z @ P["G_W1"] + P["G_b1"]
    h = torch.clamp(a1, min=0)
    out = _sig(h @ P["G_W2"] + P["G_b2"])

    def back(dout):
        da2 = dout * out * (1 - out)
        grads = {"G_W2": h.T @ da2, "G_b2": da2.sum(0)}
        da1 = (da2 @ P["G_W2"].T) * (a1 > 0)
        grads.update({"G_W1": z.T @ da1, "G_b1": da1.sum(0)})
        return grads

    return out, back


def _seed_iteration(P, M, V, t, x, z_d, z_g, small):
    """One seed iteration in float64: D step on (x, G(z_d)), then G step on z_g.

    `small[k]` marks, cumulatively, elements whose gradient was nonzero but under 1e-5 of the
    tensor's largest (exact zeros, from dead ReLUs, are exact in both): there a float32 gradient is mostly cancellation noise, and Adam (which moves every
    weight by ~lr whatever the gradient's size) turns that noise into an lr-sized difference.
    """

    def mark(k, g):
        small[k] = small.get(k, torch.zeros_like(g, dtype=torch.bool)) | ((g != 0) & (g.abs() < 1e-5 * g.abs().max()))

    n = x.shape[0]
    fake, _ = _g_forward(P, z_d)
    l_real, back_real = _d_grads(P, x)
    l_fake, back_fake = _d_grads(P, fake)
    d_real, d_fake = _bce(l_real, 1.0), _bce(l_fake, 0.0)
    g_real, _ = back_real((_sig(l_real) - 1) / n)
    g_fake, _ = back_fake(_sig(l_fake) / n)
    for k in model.D_SHAPES:
        mark(k, g_real[k] + g_fake[k])
        P[k], M[k], V[k] = _adam(P[k], g_real[k] + g_fake[k], M[k], V[k], t)
    out, back_g = _g_forward(P, z_g)
    logit, back_d = _d_grads(P, out)
    g_loss = _bce(logit, 1.0)
    _, dout = back_d((_sig(logit) - 1) / n)
    g_grads = back_g(dout)
    for k in model.G_SHAPES:
        mark(k, g_grads[k])
        P[k], M[k], V[k] = _adam(P[k], g_grads[k], M[k], V[k], t)
    return torch.stack([d_real + d_fake, d_real, d_fake, g_loss])


@pytest.mark.parametrize("steps", [1, 3])
def test_eager_step_matches_hand_written_seed_math(steps):
    torch.manual_seed(0)
    params = model.init_params(7, "cpu")
    step = model.AdamStep(params, lr=1e-3)
    P = {k: v.detach().double().clone() for k, v in params.items()}
    M = {k: torch.zeros_like(v) for k, v in P.items()}
    V = {k: torch.zeros_like(v) for k, v in P.items()}
    n = 16
    small = {}
    for t in range(1, steps + 1):
        x, z_d, z_g = torch.rand(n, 784), torch.rand(n, 100) * 2 - 1, torch.rand(n, 100) * 2 - 1
        losses = step(x, z_d, z_g)
        want = _seed_iteration(P, M, V, t, x.double(), z_d.double(), z_g.double(), small)
        # fp32 forward against fp64: relative error ~1e-6 on O(1) losses.
        torch.testing.assert_close(losses.double(), want, rtol=1e-5, atol=1e-6)
    state = step.state_dict()["adam"]
    for net, names in (("G", model.G_SHAPES), ("D", model.D_SHAPES)):
        assert float(state[net]["step"]) == steps
        for k in names:
            # Where the gradient is well above cancellation noise, fp32 and fp64 updates agree to
            # lr * 1e-3 = 1e-6. Elsewhere (few elements, see _seed_iteration) Adam still cannot
            # have moved a weight further than about lr per step.
            diff = (params[k].detach().double() - P[k]).abs()
            ok = small[k].logical_not()
            assert small[k].float().mean() < 0.01, f"{k}: too few well-conditioned elements to test"
            assert diff[ok].max() < 1e-6, k
            assert diff.max() < 2e-3 * steps, k
            # Moments are fp32 running sums of gradients. A gradient element that cancels to near
            # zero keeps fp32 rounding noise of the tensor's gradient scale (~1e-7 of its largest
            # element), so: relative 1e-4, with a floor of 1e-5 of the tensor's largest moment.
            for got, ref in ((state[net]["exp_avg"][k], M[k]), (state[net]["exp_avg_sq"][k], V[k])):
                torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())


def test_adam_state_roundtrip_continues_identically():
    torch.manual_seed(1)
    batches = [(torch.rand(8, 784), torch.rand(8, 100) * 2 - 1, torch.rand(8, 100) * 2 - 1) for _ in range(4)]
    a = model.AdamStep(model.init_params(3, "cpu"), lr=1e-3)
    for b in batches[:2]:
        a(*b)
    saved = a.state_dict()
    la = [a(*b) for b in batches[2:]]
    params = model.init_params(4, "cpu")  # other weights: load_state_dict replaces them
    b = model.AdamStep(params, lr=1e-3)
    b.load_state_dict(saved)
    lb = [b(*x) for x in batches[2:]]
    assert all(torch.equal(x, y) for x, y in zip(la, lb))
    assert all(torch.equal(a.params[k], b.params[k]) for k in params)


def _d_step_grads(monkeypatch, hyper, params, batch):
    """D's gradients in the D step of one AdamStep call (recorded where the step applies them)."""
    seen = []
    real_apply = model.AdamStep._apply

    def apply(opt, tensors, loss):
        seen.append([g.clone() for g in torch.autograd.grad(loss, tensors, retain_graph=True)])
        real_apply(opt, tensors, loss)

    monkeypatch.setattr(model.AdamStep, "_apply", staticmethod(apply))
    model.AdamStep(params, lr=1e-3, hyper=hyper)(*batch)
    return dict(zip(model.D_SHAPES, seen[0]))


def test_r1_double_backward_matches_float64_finite_differences(monkeypatch):
    """The eager R1 penalty (the oracle of the Triton trainer's closed form), in float64: the D
    step's gradients with --r1 minus those without are the penalty's gradients, checked by central
    differences of (gamma / 2) mean |grad_x D(x)|^2 (eps 1e-6: truncation ~1e-12, rounding
    ~1e-10 of O(1) values; no ReLU flips at this step size for these inputs, checked). b1 and b2
    get nothing (D is piecewise linear in x)."""
    from fastgan.recipes import Hyper

    torch.manual_seed(0)
    params = {k: v.detach().double() for k, v in model.init_params(2, "cpu").items()}
    x, z_d, z_g = torch.rand(6, 784).double(), torch.rand(6, 100).double() * 2 - 1, torch.rand(6, 100).double() * 2 - 1
    gamma = 3.0

    def fresh():
        return {k: v.clone().requires_grad_() for k, v in params.items()}

    with_r1 = _d_step_grads(monkeypatch, Hyper(r1=gamma), fresh(), (x, z_d, z_g))
    without = _d_step_grads(monkeypatch, Hyper(), fresh(), (x, z_d, z_g))

    def penalty(p):
        xr = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(model.discriminator(p, xr).sum(), xr)
        return gamma / 2 * g.square().sum(1).mean()

    pre = x @ params["D_W1"] + params["D_b1"]
    assert pre.abs().min() > 1e-4  # no pre-activation within reach of the finite differences
    gen = torch.Generator().manual_seed(1)
    for name, picks in (("D_W1", torch.randint(0, 784 * 128, (40,), generator=gen)), ("D_W2", torch.arange(128))):
        for i in picks.tolist():
            p_hi, p_lo = dict(params), dict(params)
            p_hi[name] = params[name].flatten().clone().index_add_(0, torch.tensor([i]), torch.tensor([1e-6]).double()).view_as(params[name])
            p_lo[name] = params[name].flatten().clone().index_add_(0, torch.tensor([i]), torch.tensor([-1e-6]).double()).view_as(params[name])
            fd = (penalty(p_hi) - penalty(p_lo)) / 2e-6
            got = (with_r1[name] - without[name]).flatten()[i]
            assert abs(got - fd) <= 1e-6 * max(1.0, abs(fd)), (name, i, got.item(), fd.item())
    for name in ("D_b1", "D_b2"):
        assert torch.equal(with_r1[name], without[name])


def test_ema_and_decay_in_the_eager_step():
    """G's EMA: ema <- ema + w (p - ema) after each G step from G's initial weights (w = 1 - beta in
    float32); each net's learning rate follows its decay (lr_factor, the schedule the Triton
    trainer's Adam rows carry), and the default Hyper is the seed's step, bitwise."""
    from fastgan.recipes import Hyper

    torch.manual_seed(3)
    batches = [(torch.rand(8, 784), torch.rand(8, 100) * 2 - 1, torch.rand(8, 100) * 2 - 1) for _ in range(3)]
    hyper = Hyper(lr_d=1e-3, lr_g=4e-4, g_ema=0.9, lr_decay="linear", decay_start=1, target=4)
    step = model.AdamStep(model.init_params(1, "cpu"), lr=None, hyper=hyper)
    ema = {k: step.params[k].detach().clone() for k in model.G_SHAPES}
    w = torch.tensor(1 - 0.9, dtype=torch.float32).item()
    lrs = []
    for b in batches:
        step(*b)
        lrs.append((step.opt_d.param_groups[0]["lr"], step.opt_g.param_groups[0]["lr"]))
        for k in ema:
            ema[k] = ema[k] + (step.params[k].detach() - ema[k]) * w
    # step t follows t - 1 iterations: the decay from iteration 1 to 4 starts moving at step 3
    factors = [1.0, 1.0, 2 / 3]
    assert lrs == [pytest.approx((1e-3 * f, 4e-4 * f), rel=1e-15) for f in factors]
    assert all(torch.equal(step.sample_params()[k], ema[k]) for k in ema)
    assert all(torch.equal(step.state_dict()["ema"][k], ema[k]) for k in ema)
    plain, seed = model.AdamStep(model.init_params(1, "cpu"), lr=1e-3), model.AdamStep(model.init_params(1, "cpu"), lr=None, hyper=Hyper())
    for b in batches:
        assert torch.equal(plain(*b), seed(*b))
    assert "ema" not in plain.state_dict() and plain.sample_params() is plain.params


def test_growing_ema_in_the_eager_step():
    """--g-ema-rel: after G step t the EMA moves by its step's weight (Hyper.ema_weights: 1 at
    step 1, so the EMA is then G's weights, smaller after), the same recursion as a fixed beta's."""
    from fastgan.recipes import Hyper

    torch.manual_seed(4)
    batches = [(torch.rand(8, 784), torch.rand(8, 100) * 2 - 1, torch.rand(8, 100) * 2 - 1) for _ in range(4)]
    hyper = Hyper(g_ema_rel=0.2)
    step = model.AdamStep(model.init_params(2, "cpu"), lr=None, hyper=hyper)
    ema = {k: step.params[k].detach().clone() for k in model.G_SHAPES}
    for t, b in enumerate(batches, start=1):
        step(*b)
        w = hyper.ema_weights(torch.tensor([t])).item()
        for k in ema:
            ema[k] = ema[k] + (step.params[k].detach() - ema[k]) * w
        if t == 1:
            assert all(torch.equal(step.sample_params()[k], step.params[k]) for k in ema)
    assert 0 < w < 1
    assert all(torch.equal(step.sample_params()[k], ema[k]) for k in ema)
    assert not all(torch.equal(ema[k], step.params[k]) for k in ema)


def test_lazy_r1_is_the_penalty_times_k_on_every_kth_step():
    """--r1-every 3 in the eager step: steps 1 and 4 with gamma 3, steps 2 and 3 without, checked
    against the same four steps chained from AdamSteps of gamma 3 and of no penalty through their
    state (bitwise: the same operations)."""
    from fastgan.recipes import Hyper

    torch.manual_seed(2)
    batches = [(torch.rand(8, 784), torch.rand(8, 100) * 2 - 1, torch.rand(8, 100) * 2 - 1) for _ in range(4)]
    lazy = model.AdamStep(model.init_params(5, "cpu"), lr=1e-3, hyper=Hyper(r1=0.7, r1_every=3))
    got = [lazy(*b) for b in batches]
    state, want = None, []
    for b, gamma in zip(batches, (2.1, 0.0, 0.0, 2.1)):
        step = model.AdamStep(model.init_params(5, "cpu"), lr=1e-3, hyper=Hyper(r1=0.7 * 3 if gamma else 0.0))
        if state is not None:
            step.load_state_dict(state)
        want.append(step(*b))
        state = step.state_dict()
    assert all(torch.equal(x, y) for x, y in zip(got, want))
    assert all(torch.equal(lazy.params[k], step.params[k]) for k in model.SHAPES)
    every = model.AdamStep(model.init_params(5, "cpu"), lr=1e-3, hyper=Hyper(r1=0.7, r1_every=1))
    plain = model.AdamStep(model.init_params(5, "cpu"), lr=1e-3, hyper=Hyper(r1=0.7))
    assert all(torch.equal(every(*b), plain(*b)) for b in batches)  # K = 1 is the plain penalty


def test_a_conditional_models_label_rows_are_drawn_as_the_seed_authors_concatenated_weights():
    """--conditional: G_W1 is (Z + C, H) and D_W1 (X + C, H), each drawn as one weight of that many
    inputs (std 1/sqrt(in/2), as wiseodd's conditional GAN draws [z, y] -> h); the rest as the
    seed's. The seed's model is unchanged."""
    p = model.init_params(0, "cpu", 784, 256, 10)
    assert p["G_W1"].shape == (110, 256) and p["D_W1"].shape == (794, 256) and p["G_W2"].shape == (256, 784)
    assert abs(p["G_W1"].std().item() * (110 / 2) ** 0.5 - 1) < 0.02  # 28,160 draws: 3 sigma is 0.013
    assert abs(p["D_W1"].std().item() * (794 / 2) ** 0.5 - 1) < 0.01
    seed = model.init_params(0, "cpu")
    assert all(seed[k].shape == model.SHAPES[k] for k in model.SHAPES)
    assert model.arch() == model.ARCH and model.arch(class_names=["a", "b"])["classes"] == ["a", "b"]
