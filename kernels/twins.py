"""The CPU twin of every launch the Triton trainer makes: the same signatures and buffer contract
as the launchers (preallocated outputs, the run axis, gathered real rows, partial-sum slots), in
torch's CPU ops. fastgan.graph.GraphTrainer runs them on CPU tensors, so the GAN iteration stays
written twice (the reference in fastgan/model.py and the trainer); Triton's interpreter stays what
the kernel tests run.

    linear_act_forward, linear_act_backward   kernels.linear_act
    d_grad                                    kernels.d_grad (with the R1 penalty's closed form)
    d_input_grad                              kernels.d_input_grad
    adam_update                               kernels.adam (with G's EMA in the same pass)

What is fused, on a CPU: each product is one (b)addbmm into its output, with the bias in the
product's accumulator and the activation applied in place after it; D's head (logits, both BCE
means, d loss / d logit) is computed on the (R, M, 1) logits only; the pre-activation gradients
are formed in place in one scratch buffer each and never stored in an output; Adam is one pass of
in-place ops over each network's flat buffer (all of its tensors at once).

Partial-sum slots: a twin computes the whole sum, so it writes slot 0 (the caller keeps the other
slots zero, as the contract says) and reads slot 0 onward of an input with slots, added in slot
order. The CPU trainer allocates one slot everywhere (fastgan.buffers.ONE_SLOT).

Runs: a twin takes R runs in one call, each to fp32 tolerance of the run alone; not bitwise, as
MKL's batched products (D1's 784-deep one, the one-column logits) and torch's vectorized loops
(a tail of elements in scalar code) round some elements otherwise. fastgan.graph therefore gives
the twins one run at a time, so a sweep's run equals the run alone bitwise.

Losses (LOSSES): d_grad and d_input_grad take losses=None to skip them (the BCE values and their
sums: 10 small torch calls, 30–40 µs of an iteration on a CPU; the Triton kernels get them in the
same pass as the gradients, free). The trainer reads only the last iteration's losses of each
advance, and asks only it for them on a CPU.

Scratch: the few intermediates a twin needs (gathered real rows, pre-activation gradients, the
Adam denominator) live in buffers cached by shape (`_scratch`), allocated on first use and reused
by every later call: no allocation in the training loop.

C++: inside trusted() the trainer calls these launches' C++ build (kernels/twins.cpp, loaded by
kernels.native): the trusted path of each, the same ATen operations, bitwise the same numbers
(tests/test_kernels_native.py) without the Python between the operations (~0.12 ms per iteration
on a CPU); on two threads it runs a launch's two independent products side by side, one thread
each (−3% and −2.4% at batch 128; the same bits under MKL's strict mode, which fastgan train
sets). `replay` records an advance's later iterations into a C++ plan once and replays them
without the Python between the launches (a further −5.5% at batch 128 on 2 threads). Where it
cannot be built, these Python twins run every iteration.

Checks: every shape, dtype and device is checked, in one line of Python per tensor (a CPU runs
these launches back to back, so their checks are kept cheap: no strides are asked for, as
torch's ops take any). Inside `trusted()` they are skipped (the run axis still required): for
a caller that passes the same buffers again, as fastgan.graph does after each advance's first
iteration went through the checks. The checks cost 65 µs of a 1.87 ms iteration (batch 128, 2
threads, measured by skipping them). Precision: every precision name is accepted and computes in IEEE fp32 (a
CPU has no TF32). Measured on a 2-core CPU: benchmarks/NOTES.md and docs/performance.md.
"""

import contextlib
import math
import sys

import torch

from . import native
from ._checks import slots
from .shared import check_precision

ACT_NONE, ACT_RELU, ACT_SIGMOID = 0, 1, 2  # as kernels.linear_act

_SCRATCH = {}  # (name, shape) -> a CPU buffer
_GATHERED = {}  # the gathered rows' buffer -> (images, idx, their versions) it holds
F32 = torch.float32
_trusted = False  # inside trusted(): arguments not checked


@contextlib.contextmanager
def trusted():
    """Inside, the twins skip their argument checks: every tensor must already be as the checks
    ask, with its run axis (the buffers of calls that passed them, given again). Yields the
    launches to call inside: the C++ twins (kernels.native: the same operations, bitwise the same
    numbers, without the Python between them) where they could be built, else this module."""
    global _trusted
    before, _trusted = _trusted, True
    try:
        yield native.twins() or sys.modules[__name__]
    finally:
        _trusted = before


def replay(plans, key, launches, L):
    """Call `launches(L)`: a function making trusted launches on L (the `trusted()` launches,
    the same calls every time for the same `key`). With the C++ twins, its calls are recorded once
    per key into a C++ plan kept in the dict `plans` and replayed from C++ (kernels/twins.cpp's
    Plan: the same launches on the same tensors, without the Python between them); else (or with
    `plans` None) run now."""
    if plans is None or not hasattr(L, "Plan"):
        return launches(L)
    plan = plans.get(key)
    if plan is None:
        plan = plans[key] = L.Plan()
        launches(plan)
    plan.run()


def _scratch(name, shape):
    """A CPU float32 buffer of `shape` for intermediate `name`, reused from call to call."""
    t = _SCRATCH.get((name, shape))
    if t is None:
        t = _SCRATCH[(name, shape)] = torch.empty(shape, dtype=F32)
    return t


def _runs(op, name, t, shape, R=None, dtype=F32):
    """`t` as (R, *shape): a run's tensor gains the run axis; else one line says what is wrong.
    R None: any number of runs (the first input sets it)."""
    if _trusted:
        return t
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a tensor, got {type(t).__name__}")
    given = t
    if t.dim() == len(shape):
        t = t.unsqueeze(0)
    if t.shape[1:] != shape or (R is not None and t.shape[0] != R) or t.dtype is not dtype or not t.is_cpu:
        runs = tuple(shape) if R == 1 else (R or "R", *shape)
        raise ValueError(f"{op}: {name} must be {dtype} on the CPU of shape {tuple(shape)} or {runs} with runs first; "
                         f"got {given.dtype} on {given.device} of shape {tuple(given.shape)}")
    return t


def _slot0(op, name, t, ndim):
    """Slot 0 of an output with slots (P, [R,] ...), checked (_checks.slots) unless trusted."""
    return t[0] if _trusted else slots(op, name, t, ndim)[0]


def _slot_sum(op, name, t, ndim):
    """An input with slots (P, [R,] ...): slot 0, or the slots added in order (into scratch)."""
    if not _trusted:
        slots(op, name, t, ndim)
    if t.shape[0] == 1:
        return t[0]
    total = _scratch(op + name, t.shape[1:])
    torch.add(t[0], t[1], out=total)
    for s in range(2, t.shape[0]):
        total.add_(t[s])
    return total


def _gather(op, rows, R, K):
    """images[idx] per run as (R, G, K) rows from rows=(images (n, K), idx (G,) or (R, G)). Kept:
    asked again for the same rows of the same images, unchanged since (torch's version counters:
    D1's forward, then d_grad, in one D step), the copy is reused."""
    images, idx = rows
    if not _trusted and (images.dim() != 2 or images.shape[1] != K or images.dtype is not F32 or not images.is_cpu):
        raise ValueError(f"{op}: images must be float32 rows on the CPU, (n, {K}); got {images.dtype} on "
                         f"{images.device} of shape {tuple(images.shape)}")
    idx = idx.unsqueeze(0) if idx.dim() == 1 else idx
    if not _trusted and (idx.dim() != 2 or idx.shape[0] != R or idx.dtype is not torch.int64 or not idx.is_cpu):
        raise ValueError(f"{op}: idx must be int64 row numbers on the CPU, (G,) or ({R}, G); got {idx.dtype} "
                         f"of shape {tuple(idx.shape)}")
    G = idx.shape[1]
    out = _scratch("gathered", (R, G, K))
    key = (images.data_ptr(), images._version, idx.data_ptr(), idx._version)
    if _GATHERED.get(out.data_ptr()) != key:
        torch.index_select(images, 0, idx.view(-1), out=out.view(R * G, K))
        _GATHERED[out.data_ptr()] = key
    return out


def forget_gathered():
    """Drop the kept gathered rows (the C++ twins' too): for a process whose batch indices another
    process writes (fastgan.cpu_workers), where the indices' version counters do not move."""
    _GATHERED.clear()
    cxx = native.twins()
    if cxx is not None:
        cxx.forget_gathered()


def linear_act_forward(x, w, b, y, act, precision="ieee", rows=None, partials=False):
    """y[:] = act(x @ w + b), as kernels.linear_act.linear_act_forward: one run's tensors or R
    runs' with a leading run axis; rows=(images, idx): the input is [images[idx]; x];
    partials=True: y (P, [R,] M, N) gets the raw product x @ w (no bias, no activation) in slot 0."""
    op = "linear_act_forward (CPU)"
    check_precision(op, precision)
    if partials:
        y = _slot0(op, "y", y, 2)
    K = x.shape[-1]
    w = _runs(op, "w", w, (K, w.shape[-1]))
    R, N = w.shape[0], w.shape[2]
    x = _runs(op, "x", x, (x.shape[-2], K), R)
    b = _runs(op, "b", b, (N,), R)
    G = 0 if rows is None else rows[1].shape[-1]
    y = _runs(op, "y", y, (G + x.shape[1], N), R)
    if rows is not None:
        real = _gather(op, rows, R, K)
        if partials:
            torch.bmm(real, w, out=y[:, :G])
        else:
            torch.baddbmm(b.unsqueeze(1), real, w, out=y[:, :G])
    out = y[:, G:] if G else y
    if partials:
        torch.bmm(x, w, out=out)
        return
    torch.baddbmm(b.unsqueeze(1), x, w, out=out)
    if act == ACT_RELU:
        y.relu_()
    elif act == ACT_SIGMOID:
        y.sigmoid_()
    elif act != ACT_NONE:
        raise ValueError(f"{op}: act must be ACT_NONE, ACT_RELU or ACT_SIGMOID, got {act!r}")


def linear_act_backward(x, w, y, dy, dx, dw, db, act, precision="ieee", partials=False, dy_partials=False):
    """dx = g @ w^T, dw = x^T @ g, db = sum of g over rows, for g the pre-activation gradient of
    y = act(x @ w + b), as kernels.linear_act.linear_act_backward (same run axis and slots):
    partials=True writes slot 0 of dx, dw, db; dy_partials=True reads dy's slots, in order."""
    op = "linear_act_backward (CPU)"
    check_precision(op, precision)
    M, K = x.shape[-2:]
    w = _runs(op, "w", w, (K, w.shape[-1]))
    R, N = w.shape[0], w.shape[2]
    x = _runs(op, "x", x, (M, K), R)
    y = _runs(op, "y", y, (M, N), R)
    dy = _runs(op, "dy", _slot_sum(op, "dy", dy, 2) if dy_partials else dy, (M, N), R)
    if dx is None and dw is None:
        raise ValueError(f"{op}: nothing to compute (dx and dw are both None)")
    if (dw is None) != (db is None):
        raise ValueError(f"{op}: dw and db are computed together; pass both or neither")
    if act == ACT_NONE:
        g = dy
    elif act == ACT_RELU:  # torch's fused activation backward ops: one pass, no mask tensor
        g = torch.ops.aten.threshold_backward.grad_input(dy, y, 0, grad_input=_scratch(op, (R, M, N)))
    elif act == ACT_SIGMOID:
        g = torch.ops.aten.sigmoid_backward.grad_input(dy, y, grad_input=_scratch(op, (R, M, N)))
    else:
        raise ValueError(f"{op}: act must be ACT_NONE, ACT_RELU or ACT_SIGMOID, got {act!r}")
    if dx is not None:
        dx = _runs(op, "dx", _slot0(op, "dx", dx, 2) if partials else dx, (M, K), R)
        torch.bmm(g, w.transpose(1, 2), out=dx)
    if dw is not None:
        dw = _runs(op, "dw", _slot0(op, "dw", dw, 2) if partials else dw, (K, N), R)
        db = _runs(op, "db", _slot0(op, "db", db, 1) if partials else db, (N,), R)
        torch.bmm(x.transpose(1, 2), g, out=dw)
        torch.sum(g, dim=1, out=db)


def _d1_output(op, h, pre, R, M, H):
    """D1's output (R, M, H): h as given, or relu(the slots' sum + b1) from pre=(slots, b1) in
    scratch (as kernels.shared.d1_input reads them)."""
    if (h is None) == (pre is None):
        raise ValueError(f"{op}: pass D1's output h, or h=None and pre=(slots, b1) to finish it here")
    if pre is None:
        return _runs(op, "h", h, (M, H), R)
    total = _runs(op, "pre", _slot_sum(op, "pre", pre[0], 2), (M, H), R)
    b1 = _runs(op, "b1", pre[1], (H,), R)
    out = _scratch(op + "h", (R, M, H))
    torch.add(total, b1.unsqueeze(1), out=out)
    return out.relu_()


def _row_terms(M, split, t0, t1):
    """Per row of D's head: its target and the factor that makes its part's BCE sum a mean
    (rows [0, split) against t0, the rest against t1), (M, 1) each, made once."""
    key = ("rows", M, split, float(t0), float(t1))
    terms = _SCRATCH.get(key)
    if terms is None:
        target, scale = torch.full((M, 1), float(t1)), torch.full((M, 1), 1.0 / max(M - split, 1))
        target[:split], scale[:split] = float(t0), 1.0 / split
        terms = _SCRATCH[key] = (target, scale)
    return terms


def _head(op, h, w2, b2, split, t0, t1, losses=True):
    """D's output layer on D1's output h (R, M, H) and its gradient: each row's share of its
    part's mean BCE (R, M, 1; None unless `losses`), and D1's pre-activation gradient
    g = dl w2^T [h > 0] (R, M, H) with dl = d(sum of the parts' means) / d logit (R, M, 1); scratch."""
    R, M, H = h.shape
    target, scale = _row_terms(M, split, t0, t1)
    logit, dl, bce = (_scratch(op + name, (R, M, 1)) for name in ("logit", "dl", "bce"))
    torch.baddbmm(b2.unsqueeze(1), h, w2, out=logit)
    torch.sigmoid(logit, out=dl)
    dl.sub_(target).mul_(scale)
    if losses:
        torch._C._nn.softplus(logit, 1, 20, out=bce)  # BCE = softplus(l) - t l; softplus is l itself past 20
        bce.addcmul_(logit, target, value=-1.0).mul_(scale)
    else:
        bce = None
    g = _scratch(op + "g", (R, M, H))
    torch.bmm(dl, w2.transpose(1, 2), out=g)
    return bce, dl, torch.ops.aten.threshold_backward.grad_input(g, h, 0, grad_input=g)


def _head_weights(op, w2, b2):
    """(R, H, w2, b2) from D's output weights w2 (H, 1) and b2 (1,), runs first or not, checked."""
    H = w2.shape[-2]
    w2 = _runs(op, "w2", w2, (H, 1))
    R = w2.shape[0]
    return R, H, w2, _runs(op, "b2", b2, (1,), R)


def d_grad(x, w2, b2, losses, dw1, db1, dw2, db2, split, t0=1.0, t1=0.0, h=None, pre=None, rows=None,
           precision="ieee", r1=None, w1=None):
    """The D step's losses [d_loss, real part, fake part] and D's gradients, as
    kernels.d_grad.d_grad: written to slot 0 of each output (losses None: not computed, LOSSES); rows=(images, idx) the gathered real
    rows ahead of x; with r1 (gammas (R,)) and w1: the R1 penalty's closed-form gradients on rows
    [0, split) added (kernels.d_grad's module doc)."""
    op = "d_grad (CPU)"
    check_precision(op, precision)
    R, H, w2, b2 = _head_weights(op, w2, b2)
    K = x.shape[-1]
    x = _runs(op, "x", x, (x.shape[-2], K), R)
    real = None if rows is None else _gather(op, rows, R, K)
    G = 0 if real is None else real.shape[1]
    M = G + x.shape[1]
    if not 0 < split < M:
        raise ValueError(f"{op}: split must be in 1..{M - 1} (both parts non-empty), got {split}")
    losses, dw1, db1, dw2, db2 = (None if t is None else _runs(op, n, _slot0(op, n, t, len(s)), s, R) for n, t, s in (
        ("losses", losses, (3,)), ("dw1", dw1, (K, H)), ("db1", db1, (H,)), ("dw2", dw2, (H, 1)), ("db2", db2, (1,))))
    if (r1 is None) != (w1 is None):
        raise ValueError(f"{op}: the R1 penalty needs both r1 (gammas per run) and w1 (D1's weight); pass both or neither")
    h = _d1_output(op, h, pre, R, M, H)
    bce, dl, g = _head(op, h, w2, b2, split, t0, t1, losses is not None)
    if losses is not None:
        torch.sum(bce[:, :split, 0], dim=1, out=losses[:, 1])
        torch.sum(bce[:, split:, 0], dim=1, out=losses[:, 2])
        torch.add(losses[:, 1], losses[:, 2], out=losses[:, 0])
    torch.bmm(h.transpose(1, 2), dl, out=dw2)
    torch.sum(dl, dim=1, out=db2)
    torch.sum(g, dim=1, out=db1)
    if real is None:
        torch.bmm(x.transpose(1, 2), g, out=dw1)
    else:  # dW1 = [real; x]^T g, each part where it lives
        torch.bmm(real.transpose(1, 2), g[:, :G], out=dw1)
        dw1.baddbmm_(x.transpose(1, 2), g[:, G:])
    gamma = None if r1 is None else _runs(op, "r1", r1, (), R)
    if gamma is not None and gamma.any():  # all zero (lazy R1's other steps): nothing to add, nothing computed
        k_r1 = w1.shape[-2]  # the penalty's input columns: all K, or the first (a conditional D's pixels)
        if not 1 <= k_r1 <= K:
            raise ValueError(f"{op}: w1 must be D1's weight (K, H) = ({K}, {H}) or its first rows, got {tuple(w1.shape[-2:])}")
        _r1_grads(op, h[:, :split], _runs(op, "w1", w1, (k_r1, H), R), w2, gamma, split, dw1[:, :k_r1], dw2)


def _r1_grads(op, h, w1, w2, gamma, n, dw1, dw2):
    """The R1 penalty's gradients (gamma / 2n) sum |grad_x D|^2 over the n real rows h, added. With
    u = w2^T [h > 0] per row and grad_x D = u W1^T: dW1 += (gamma / n) W1 (u^T u) and
    dw2 += (gamma / n) sum over the rows of [h > 0] (u W1^T W1): products of H x H matrices
    (kernels.d_grad's closed form reassociated; the K-wide grad_x D is never formed): 2 K H^2 +
    2 n H^2 multiply-adds instead of 3 n K H, 22% fewer at batch 128 and 5x fewer at 1024."""
    R, _, H = h.shape
    scale = _scratch(op + "r1scale", (R, 1, 1))
    torch.div(gamma.view(R, 1, 1), n, out=scale)
    u = torch.ops.aten.threshold_backward.grad_input(w2.transpose(1, 2).expand(h.shape), h, 0,
                                                     grad_input=_scratch(op + "r1u", h.shape))
    gram = _scratch(op + "r1w", (R, H, H))
    torch.bmm(w1.transpose(1, 2), w1, out=gram)  # W1^T W1
    uw = _scratch(op + "r1uw", h.shape)
    torch.bmm(u, gram, out=uw)
    torch.ops.aten.threshold_backward.grad_input(uw, h, 0, grad_input=uw)
    dw2.addcmul_(uw.sum(1).unsqueeze(2), scale)
    torch.bmm(u.transpose(1, 2), u, out=gram)  # u^T u
    dw1.baddbmm_(w1, gram.mul_(scale))


def d_input_grad(h, w1, w2, b2, losses, dx, t=1.0, pre=None, precision="ieee"):
    """G's loss through D and its gradient to D's input, as kernels.d_input_grad.d_input_grad:
    the mean BCE against t in slot 0 of `losses` (P, [R,] 1; None: not computed, LOSSES), dx
    (M, K) in full."""
    op = "d_input_grad (CPU)"
    check_precision(op, precision)
    R, H, w2, b2 = _head_weights(op, w2, b2)
    K = w1.shape[-2]
    w1 = _runs(op, "w1", w1, (K, H), R)
    M = dx.shape[-2]
    dx = _runs(op, "dx", dx, (M, K), R)
    losses = None if losses is None else _runs(op, "losses", _slot0(op, "losses", losses, 1), (1,), R)
    h = _d1_output(op, h, pre, R, M, H)
    bce, _, g = _head(op, h, w2, b2, M, t, t, losses is not None)  # one part: every row against t
    if losses is not None:
        torch.sum(bce, dim=1, out=losses)
    torch.bmm(g, w1.transpose(1, 2), out=dx)


def adam_update(p, g, m, v, hyper, beta2, eps, ema=None):
    """In place: one Adam step over flat buffers, as kernels.adam.adam_update; g may carry slots
    (added in order); `hyper` (R, >= 3 or 4) per run [step size, sqrt(1 - b2^t), 1 - b1, 1 - EMA
    beta]; with `ema`: ema += hyper[3] (p - ema).

    Each run's update is torch's fused CPU Adam (one vectorized pass over the flat buffer, the
    same operations as torch.optim.Adam's: m lerp, v, p -= step_size m / (sqrt(v) / bc2_sqrt +
    eps)). It takes lr, beta1 and a step count rather than the step's terms, so they are solved
    for from the run's row (read on the host: a CPU tensor, nothing to wait for): the step count
    s with sqrt(1 - b2^s) = bc2_sqrt, beta1 = 1 - (1 - b1), lr = step_size (1 - beta1^s). Its
    own terms then equal the row's to about an ulp of float32."""
    op = "adam_update (CPU)"
    n, p_dims = p.shape[-1], p.dim()
    p = _runs(op, "p", p, (n,))
    R = p.shape[0]
    g = _runs(op, "g", _slot_sum(op, "g", g, 1) if g.dim() == p_dims + 1 else g, (n,), R)
    m, v = _runs(op, "m", m, (n,), R), _runs(op, "v", v, (n,), R)
    if ema is not None:
        ema = _runs(op, "ema", ema, (n,), R)
    width = 3 if ema is None else 4
    hyper = hyper.unsqueeze(0) if hyper.dim() == 1 else hyper
    if hyper.dim() != 2 or hyper.shape[0] != R or hyper.shape[1] < width:
        raise ValueError(f"{op}: hyper must hold [step size, sqrt(1 - beta2^t), 1 - beta1"
                         f"{'' if ema is None else ', 1 - EMA beta'}] per run: shape ({R}, >= {width}), "
                         f"got {tuple(hyper.shape)}")
    if not (0 < beta2 < 1 and eps > 0):
        raise ValueError(f"{op}: need 0 < beta2 < 1 and eps > 0, got {beta2}, {eps}")
    step = _scratch("adam step", ())
    for r, row in enumerate(hyper.tolist()):
        step_size, bc2_sqrt, beta1 = row[0], row[1], 1.0 - row[2]
        s = min(math.log1p(-bc2_sqrt * bc2_sqrt) / math.log(beta2), 1e9) if bc2_sqrt < 1.0 else 1e9
        step.fill_(s)
        torch._fused_adam_([p[r]], [g[r]], [m[r]], [v[r]], [], [step], lr=step_size * (1.0 - beta1**s), beta1=beta1,
                           beta2=beta2, weight_decay=0.0, eps=eps, amsgrad=False, maximize=False)
        if ema is not None and row[3]:
            ema[r].lerp_(p[r], row[3])
