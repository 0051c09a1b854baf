"""kernels.linear_act against float64 PyTorch: outputs, every gradient, odd shapes, bad input.

Runs under TRITON_INTERPRET=1 on the CPU (conftest) and natively on a GPU.

Tolerances. Inputs are scaled so pre-activations are O(1) (x ~ U(0, 1) like pixels, w ~ the
seed's init), as in the GAN. IEEE fp32 dot products over K terms carry a normwise relative
error of a few ulp * sqrt(K) ~ 1e-7 * 30 = 3e-6 at K = 785, so 2e-5 leaves margin without
hiding a wrong index or mask (those give errors of order 1). TF32 rounds each operand to a
10-bit mantissa (2^-11 = 4.9e-4 relative), so its products land near 5e-4: 3e-3 there.
TF32x3 splits each operand into a TF32 high part and a TF32 remainder and adds three products,
dropping lo*lo: about 2^-21 = 5e-7 relative per product, ~1.5e-5 normwise at K = 785: 5e-5.
db is a sum over the batch of terms of both signs: with one output column it can cancel to a
small number, so its error is measured against the sum of the terms' magnitudes (the bound of a
summation), not against |db| (`_db_err`); a wrong index or mask still shows at order 1.
"""

import math

import pytest
import reference
import torch
from conftest import DEVICES, requires_cuda
from fastgan.kernels import ACT_NONE, ACT_RELU, ACT_SIGMOID, linear_act_backward, linear_act_forward
from helpers import rel_err

from fastgan import kernels

FUNCS = {ACT_NONE: kernels.linear, ACT_RELU: kernels.linear_relu, ACT_SIGMOID: kernels.linear_sigmoid}
# (M, K, N): the GAN's layers at a small batch, and odd sizes on every axis so masking shows.
SHAPES = [(1, 7, 33), (7, 33, 1), (33, 129, 7), (129, 785, 1), (7, 100, 128), (33, 128, 785), (128, 784, 128)]
IEEE_TOL = 2e-5
PRECISION_TOL = {"tf32": 3e-3, "tf32x3": 5e-5}


ACT_PRIME = {ACT_NONE: lambda y: torch.ones_like(y), ACT_RELU: lambda y: (y > 0).double(), ACT_SIGMOID: lambda y: y * (1 - y)}


def _db_err(db, want, dy, yd, act):
    """db's error relative to the sum of |dy * act'(y)| over the batch (see module doc)."""
    terms = (dy.double().cpu() * ACT_PRIME[act](yd.detach().double().cpu())).abs().sum(0)
    return ((db.double().cpu() - want.cpu()).norm() / terms.norm().clamp_min(1e-30)).item()


def _inputs(M, K, N, device, grad=False):
    x = torch.rand(M, K, device=device)
    w = torch.randn(K, N, device=device) / math.sqrt(K / 2)
    b = torch.randn(N, device=device) * 0.1
    return [t.requires_grad_(grad) for t in (x, w, b)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("act", list(reference.ACTS))
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_autograd_matches_float64(device, act, M, K, N):
    x, w, b = _inputs(M, K, N, device, grad=True)
    y = FUNCS[act](x, w, b)
    dy = torch.randn_like(y)
    y.backward(dy)
    xd, wd, bd, yd = reference.linear_act(x, w, b, act)
    yd.backward(dy.double().cpu() if device == "cpu" else dy.double())
    assert rel_err(y, yd) < IEEE_TOL
    for got, want in ((x.grad, xd.grad), (w.grad, wd.grad)):
        assert rel_err(got, want) < IEEE_TOL
    assert _db_err(b.grad, bd.grad, dy, yd, act) < IEEE_TOL


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("act", list(reference.ACTS))
@pytest.mark.parametrize("M,K,N", [(7, 33, 129), (129, 785, 1)])
def test_launchers_write_every_element(device, act, M, K, N):
    x, w, b = _inputs(M, K, N, device)
    y = torch.full((M, N), float("nan"), device=device)
    linear_act_forward(x, w, b, y, act)
    assert torch.isfinite(y).all()
    dy = torch.randn(M, N, device=device)
    dx, dw, db = (torch.full(s, float("nan"), device=device) for s in ((M, K), (K, N), (N,)))
    linear_act_backward(x, w, y, dy, dx, dw, db, act)
    xd, wd, bd, yd = reference.linear_act(x, w, b, act)
    yd.backward(dy.double())
    assert rel_err(y, yd) < IEEE_TOL
    for got, want in ((dx, xd.grad), (dw, wd.grad)):
        assert torch.isfinite(got).all() and rel_err(got, want) < IEEE_TOL
    assert torch.isfinite(db).all() and _db_err(db, bd.grad, dy, yd, act) < IEEE_TOL


@pytest.mark.parametrize("device", DEVICES)
def test_backward_flags_skip_work(device):
    M, K, N = 7, 33, 17
    x, w, b = _inputs(M, K, N, device)
    y = torch.empty(M, N, device=device)
    linear_act_forward(x, w, b, y, ACT_RELU)
    dy = torch.randn(M, N, device=device)
    xd, wd, bd, yd = reference.linear_act(x, w, b, ACT_RELU)
    yd.backward(dy.double())
    # dx only: dw's memory is left untouched.
    dx = torch.full((M, K), float("nan"), device=device)
    linear_act_backward(x, w, y, dy, dx, None, None, ACT_RELU)
    assert rel_err(dx, xd.grad) < IEEE_TOL
    # dw and db only.
    dw, db = torch.full((K, N), float("nan"), device=device), torch.full((N,), float("nan"), device=device)
    linear_act_backward(x, w, y, dy, None, dw, db, ACT_RELU)
    assert rel_err(dw, wd.grad) < IEEE_TOL and _db_err(db, bd.grad, dy, yd, ACT_RELU) < IEEE_TOL


@pytest.mark.parametrize("device", DEVICES)
def test_strided_inputs(device):
    M, K, N = 9, 40, 24
    x_big = torch.rand(K, M, device=device)
    x = x_big.t()  # (M, K) with strides (1, M)
    w = (torch.randn(N, K, device=device) / math.sqrt(K / 2)).t()  # (K, N), transposed storage
    b = torch.randn(2 * N, device=device)[::2]  # stride 2
    y = torch.empty(M, N, device=device)
    linear_act_forward(x, w, b, y, ACT_SIGMOID)
    _, _, _, yd = reference.linear_act(x, w, b, ACT_SIGMOID)
    assert rel_err(y, yd) < IEEE_TOL


@pytest.mark.parametrize("device", DEVICES)
def test_only_requested_gradients(device):
    x, w, b = _inputs(5, 20, 9, device)
    w.requires_grad_(True)
    kernels.linear_relu(x, w, b).sum().backward()
    assert x.grad is None and b.grad is None and w.grad is not None


@requires_cuda
@pytest.mark.parametrize("precision", list(PRECISION_TOL))
@pytest.mark.parametrize("act", list(reference.ACTS))
@pytest.mark.parametrize("M,K,N", [(128, 784, 128), (128, 100, 128), (128, 128, 784), (256, 784, 128)])
def test_tensor_core_precisions_within_stated_tolerance(precision, act, M, K, N):
    """TF32 and TF32x3 products (the tensor cores; compiled only on a GPU) stay within the
    tolerance derived above of float64, and TF32 is not silently IEEE (it must differ)."""
    x, w, b = _inputs(M, K, N, "cuda")
    y = torch.empty(M, N, device="cuda")
    linear_act_forward(x, w, b, y, act, precision=precision)
    dy = torch.randn(M, N, device="cuda")
    dx, dw, db = torch.empty(M, K, device="cuda"), torch.empty(K, N, device="cuda"), torch.empty(N, device="cuda")
    linear_act_backward(x, w, y, dy, dx, dw, db, act, precision=precision)
    xd, wd, bd, yd = reference.linear_act(x, w, b, act)
    yd.backward(dy.double())
    for got, want in ((y, yd), (dx, xd.grad), (dw, wd.grad)):
        assert rel_err(got, want) < PRECISION_TOL[precision]
    assert _db_err(db, bd.grad, dy, yd, act) < PRECISION_TOL[precision]
    if precision == "tf32":
        y_ieee = torch.empty_like(y)
        linear_act_forward(x, w, b, y_ieee, act)
        assert rel_err(y_ieee, yd) < IEEE_TOL < rel_err(y, yd)


# --- bad input ----------------------------------------------------------------------------------


def _good(device="cpu"):
    x, w, b = _inputs(4, 6, 5, device)
    return x, w, b, torch.empty(4, 5, device=device)


@pytest.mark.parametrize(
    "mutate, error, message",
    [
        (lambda x, w, b, y: (x, w[:5], b, y), ValueError, r"w must be \(in, out\) with in = 6"),
        (lambda x, w, b, y: (x, w, b[:4], y), ValueError, r"b has shape \(4,\), expected \(5,\)"),
        (lambda x, w, b, y: (x, w, b, y[:3]), ValueError, r"y has shape \(3, 5\), expected \(4, 5\)"),
        (lambda x, w, b, y: (x.double(), w, b, y), TypeError, "x must be torch.float32, got torch.float64"),
        (lambda x, w, b, y: (x.half(), w, b, y), TypeError, "x must be torch.float32"),
        (lambda x, w, b, y: (x[0], w, b, y), ValueError, "x must be 2-D"),
        (lambda x, w, b, y: (x, w, b, torch.empty(5, 4).t()), ValueError, "output y must be contiguous"),
        (lambda x, w, b, y: (x, w, b, y.to("meta")), ValueError, "all tensors must be on one device"),
        (lambda x, w, b, y: (x.tolist(), w, b, y), TypeError, "x must be a tensor"),
    ],
)
def test_forward_rejects_bad_arguments(mutate, error, message):
    with pytest.raises(error, match=message):
        linear_act_forward(*mutate(*_good()), ACT_RELU)


def test_unknown_activation():
    with pytest.raises(ValueError, match="activation must be one of"):
        linear_act_forward(*_good(), 7)


def test_backward_rejects_bad_arguments():
    x, w, b, y = _good()
    dy = torch.randn(4, 5)
    with pytest.raises(ValueError, match="nothing to compute"):
        linear_act_backward(x, w, y, dy, None, None, None, ACT_RELU)
    with pytest.raises(ValueError, match="pass both or neither"):
        linear_act_backward(x, w, y, dy, None, torch.empty(6, 5), None, ACT_RELU)
    with pytest.raises(ValueError, match=r"dx has shape \(4, 5\), expected \(4, 6\)"):
        linear_act_backward(x, w, y, dy, torch.empty(4, 5), None, None, ACT_RELU)
    with pytest.raises(ValueError, match=r"dy has shape"):
        linear_act_backward(x, w, y, dy[:2], torch.empty(4, 6), None, None, ACT_RELU)


@requires_cuda
def test_mixed_devices_rejected():
    """A CPU input beside CUDA tensors is refused with a clear error, not launched."""
    x, w, b, y = _good("cuda")
    with pytest.raises(ValueError, match="all tensors must be on one device"):
        linear_act_forward(x.cpu(), w, b, y, ACT_RELU)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("act", list(reference.ACTS))
def test_runs_in_one_launch_equal_each_run_alone(device, act):
    """R runs with a leading run axis (outputs placed apart, as a sweep's buffers are) give
    bitwise what each run's tensors give launched alone: the run axis only adds programs."""
    R, M, K, N = 3, 9, 33, 17
    x, w, b = torch.randn(R, M, K, device=device), torch.randn(R, K, N, device=device), torch.randn(R, N, device=device)
    y = torch.full((R, M + 2, N), float("nan"), device=device)[:, 1 : M + 1]  # runs apart, each contiguous
    linear_act_forward(x, w, b, y, act)
    dy = torch.randn(R, M, N, device=device)
    dx, dw, db = torch.empty(R, M, K, device=device), torch.empty(R, K, N, device=device), torch.empty(R, N, device=device)
    linear_act_backward(x, w, y, dy, dx, dw, db, act)
    for r in range(R):
        y1 = torch.empty(M, N, device=device)
        linear_act_forward(x[r], w[r], b[r], y1, act)
        dx1, dw1, db1 = torch.empty(M, K, device=device), torch.empty(K, N, device=device), torch.empty(N, device=device)
        linear_act_backward(x[r], w[r], y1, dy[r], dx1, dw1, db1, act)
        for got, want in ((y[r], y1), (dx[r], dx1), (dw[r], dw1), (db[r], db1)):
            assert torch.equal(got, want)


def test_runs_must_agree():
    x, w, b, y = _good()
    with pytest.raises(ValueError, match=r"w has 2 runs, expected 1"):
        linear_act_forward(x, torch.stack([w, w]), b, y, ACT_RELU)
    with pytest.raises(ValueError, match="output y must be contiguous within each run"):
        linear_act_forward(x.expand(2, 4, 6), torch.stack([w, w]), torch.stack([b, b]), torch.empty(4, 5).expand(2, 4, 5), ACT_RELU)


# --- split-M partial sums, gathered rows, precision plumbing -----------------------------------


def _one_entry(config):
    """A table with one backward config that matches every shape (configs.use puts it first)."""
    return [{"kernel": "linear_act_bwd", "config": config}]


def _layer(M, K, N, act, device):
    """Inputs, the kernel's forward output y and a random upstream gradient dy."""
    x, w, b = _inputs(M, K, N, device)
    y = torch.empty(M, N, device=device)
    linear_act_forward(x, w, b, y, act)
    return x, w, b, y, torch.randn(M, N, device=device)


SPLIT_CONFIG = {"DX_BLOCK_M": 16, "DX_BLOCK_N": 16, "DX_BLOCK_K": 16, "DW_BLOCK_M": 16, "DW_BLOCK_N": 16,
                "DW_BLOCK_K": 16, "SPLIT_M": 3, "SPLIT_N": 1, "num_warps": 4, "num_stages": 1}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("M", [1, 33, 70])
def test_split_m_partials_sum_to_the_gradient(device, M):
    """dw and db in SPLIT_M = 3 partial slots (16-row blocks: at M = 33 the last chunk holds one
    row, at M = 1 two chunks are empty and must be written as zeros) sum to float64's gradient;
    a fourth slot past the split is left as it was."""
    K, N = 20, 17
    x, w, b, y, dy = _layer(M, K, N, ACT_RELU, device)
    dw = torch.full((4, K, N), float("nan"), device=device)
    db = torch.full((4, N), float("nan"), device=device)
    with kernels.configs.use(_one_entry(SPLIT_CONFIG)):
        assert kernels.linear_act.dw_partials(torch.device(device), M, N, K) == min(3, M)
        linear_act_backward(x, w, y, dy, None, dw, db, ACT_RELU, partials=True)
        if M > 32:
            with pytest.raises(ValueError, match="dw has 2 slots but this launch's config splits the batch in 3"):
                linear_act_backward(x, w, y, dy, None, dw[:2], db[:2], ACT_RELU, partials=True)
    split = min(3, M)
    assert torch.isnan(dw[split:]).all() and torch.isnan(db[split:]).all()
    xd, wd, bd, yd = reference.linear_act(x, w, b, ACT_RELU)
    yd.backward(dy.double())
    assert rel_err(dw[:split].sum(0), wd.grad) < IEEE_TOL and _db_err(db[:split].sum(0), bd.grad, dy, yd, ACT_RELU) < IEEE_TOL


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("act", [ACT_RELU, ACT_SIGMOID])
def test_gathered_rows_equal_the_gathered_input(device, act):
    """rows=(images, idx): the forward reads images[idx] as the first rows in place, with the same
    numbers as the input gathered beforehand (bitwise: the same products in the same order), per
    run of a 2-run launch."""
    R, G, Mx, K, N = 2, 9, 7, 33, 20
    images = torch.rand(50, K, device=device)
    idx = torch.randint(0, 50, (R, G), device=device)
    x = torch.rand(R, Mx, K, device=device)
    w, b = torch.randn(R, K, N, device=device) / 4, torch.randn(R, N, device=device)
    full = torch.cat([images[idx], x], dim=1)  # (R, G + Mx, K)
    y, y_ref = (torch.full((R, G + Mx, N), float("nan"), device=device) for _ in range(2))
    linear_act_forward(x, w, b, y, act, rows=(images, idx))
    linear_act_forward(full, w, b, y_ref, act)
    assert torch.equal(y, y_ref)
    with pytest.raises(TypeError, match="idx must be torch.int64"):
        linear_act_forward(x, w, b, y, act, rows=(images, idx.int()))
    with pytest.raises(ValueError, match=r"images must be \(n, 33\) with contiguous rows"):
        linear_act_forward(x, w, b, y, act, rows=(images[:, :20], idx))


def test_unknown_precision_refused():
    with pytest.raises(ValueError, match=r"precision must be one of \('ieee', 'tf32x3', 'tf32'\), got 'bf16'"):
        linear_act_forward(*_good(), ACT_RELU, precision="bf16")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("K", [20, 70, 785])
def test_split_k_slots_sum_to_the_pre_activation(device, K):
    """partials=True with SPLIT_K = 3 chunks of 16-deep blocks: raw sums (no bias, no
    activation) into 3 of 4 slots that add up to x @ w in float64; the fourth is left alone
    (at K = 20 only 2 chunks: the third slot written, the fourth untouched); too few slots refused."""
    M, N = 9, 17
    x, w, b = _inputs(M, K, N, device)
    table = [{"kernel": "linear_act_fwd", "config": {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "SPLIT_K": 3,
                                                     "num_warps": 4, "num_stages": 2}}]
    y = torch.full((4, M, N), float("nan"), device=device)
    with kernels.configs.use(table):
        n = kernels.linear_act.forward_partials(torch.device(device), M, N, K)
        assert n == min(3, -(-K // 16))
        linear_act_forward(x, w, b, y, ACT_SIGMOID, partials=True)
        with pytest.raises(ValueError, match=f"y has 1 slots but this launch's config splits K in {n}"):
            linear_act_forward(x, w, b, y[:1], ACT_SIGMOID, partials=True)
    assert torch.isnan(y[n:]).all() and torch.isfinite(y[:n]).all()
    assert rel_err(y[:n].sum(0), x.double() @ w.double()) < IEEE_TOL


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("N", [20, 70, 785])
def test_split_n_dx_slots_sum_to_the_input_gradient(device, N):
    """partials=True with SPLIT_N = 3 chunks of 16-wide blocks: dx's sum over the N outputs cut
    into 3 of 4 slots that add up to float64's dx (at N = 20 only 2 chunks: the third slot is
    written, the fourth left alone); dw, db unchanged by the split; too few slots refused."""
    M, K = 9, 33
    x, w, b, y, dy = _layer(M, K, N, ACT_SIGMOID, device)
    dx = torch.full((4, M, K), float("nan"), device=device)
    dw, db = torch.zeros(1, K, N, device=device), torch.zeros(1, N, device=device)
    config = {**SPLIT_CONFIG, "SPLIT_M": 1, "SPLIT_N": 3, "DW_BLOCK_N": 64, "DW_BLOCK_K": 64}  # few dW programs: fast
    with kernels.configs.use(_one_entry(config)):
        n = kernels.linear_act.dx_partials(torch.device(device), M, N, K)
        assert n == min(3, -(-N // 16))
        linear_act_backward(x, w, y, dy, dx, dw, db, ACT_SIGMOID, partials=True)
        with pytest.raises(ValueError, match=f"dx has 1 slots but this launch's config splits N in {n}"):
            linear_act_backward(x, w, y, dy, dx[:1], dw, db, ACT_SIGMOID, partials=True)
    assert torch.isnan(dx[n:]).all() and torch.isfinite(dx[:n]).all()
    xd, wd, bd, yd = reference.linear_act(x, w, b, ACT_SIGMOID)
    yd.backward(dy.double())
    assert rel_err(dx[:n].sum(0), xd.grad) < IEEE_TOL
    assert rel_err(dw[0], wd.grad) < IEEE_TOL and _db_err(db[0], bd.grad, dy, yd, ACT_SIGMOID) < IEEE_TOL


@pytest.mark.parametrize("device", DEVICES)
def test_dy_slots_are_added_in_slot_order(device):
    """dy_partials=True: dy as 3 slots (the next layer's split dx), added in slot order where g
    is formed, gives bitwise the dx, dw and db of dy pre-summed as ((s0 + s1) + s2), for one
    run and for a 2-run launch (slot and run strides both in play); a dy without a slot axis is
    refused."""
    R, M, K, N = 2, 21, 17, 33
    x = torch.rand(R, M, K, device=device)
    w, b = torch.randn(R, K, N, device=device) / 4, torch.randn(R, N, device=device)
    y = torch.empty(R, M, N, device=device)
    linear_act_forward(x, w, b, y, ACT_RELU)
    parts = torch.randn(3, R, M, N, device=device)
    summed = (parts[0] + parts[1]) + parts[2]
    for r in (slice(None), 0):  # both runs in one launch, then run 0 alone (no run axis)
        part = parts[:, r]
        outs = [(torch.empty_like(x[r]), torch.empty_like(w[r]), torch.empty_like(b[r])) for _ in range(2)]
        linear_act_backward(x[r], w[r], y[r], part, *outs[0], ACT_RELU, dy_partials=True)
        linear_act_backward(x[r], w[r], y[r], summed[r], *outs[1], ACT_RELU)
        for got, want in zip(*outs):
            assert torch.equal(got, want)
    with pytest.raises(ValueError, match="with partials, dy has a leading axis of slots"):
        linear_act_backward(x[0], w[0], y[0], summed[0], None, *outs[0][1:], ACT_RELU, dy_partials=True)
