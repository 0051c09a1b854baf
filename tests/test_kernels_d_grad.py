"""kernels.d_grad (the D step's losses and every gradient of D, in one launch) against float64
autograd.

The reference takes D1's output h as the kernel sees it (float32, widened) and differentiates
the rest in float64: logits h w2 + b2, the two BCE means (rows [0, split) against t0, the rest
against t1) and their sum, and the gradients of the sum to w2, b2 and, through D1's ReLU mask
[h > 0], to W1 (x^T g) and b1. (Recomputing h from x in float64 could flip the mask of an element
whose pre-activation rounds across 0: an O(1) difference that is not the kernel's.)

Tolerances as in test_kernels_d_input_grad: the losses are fp32 means (1e-5 relative); the
gradients are fp32 sums over at most M rows of O(1/M) terms: 2e-5 normwise relative. db1 and
db2 are sums of terms of both signs that can cancel: measured against the sum of the terms'
magnitudes (as test_kernels_linear_act's db). TF32 on a GPU: 3e-3 and 5e-5.
"""


import pytest
import reference
import torch
from conftest import DEVICES, requires_cuda
from fastgan.kernels import configs, d_grad
from fastgan.kernels.d_grad import grad_partials
from helpers import d_inputs, rel_err

NAN = float("nan")


def _outputs(slots, M, H, K, device, runs=()):
    """losses, dw1, db1, dw2, db2, each with `slots` slots, poisoned with NaN."""
    shapes = ((3,), (K, H), (H,), (H, 1), (1,))
    return [torch.full((slots, *runs, *s), NAN, device=device) for s in shapes]


def _check(got, want, n):
    """The slots [:n] summed against float64; each db against its terms' magnitudes (module doc)."""
    losses, dw1, db1, dw2, db2 = (t[:n].sum(0).double() for t in got)
    torch.testing.assert_close(losses, want["losses"], rtol=1e-5, atol=0)
    assert rel_err(dw1, want["dw1"]) < 2e-5 and rel_err(dw2, want["dw2"]) < 2e-5
    for name in ("db1", "db2"):
        got_db = db1 if name == "db1" else db2
        assert ((got_db - want[name]).norm() / want[f"{name}_terms"].norm().clamp_min(1e-30)) < 2e-5, name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("M,H,K,split", [(2, 7, 33, 1), (33, 128, 785, 17), (129, 33, 100, 64), (256, 128, 784, 128),
                                         (33, 300, 65, 17), (17, 1024, 33, 4), (9, 129, 40, 4)])  # past WHOLE_H: tiles
def test_matches_float64(device, M, H, K, split):
    """Every output slot up to the split written (poisoned with NaN before), the slot past it
    left alone, the slots' sums the float64 losses and gradients."""
    x, _, _, w2, b2, h = d_inputs(M, H, K, device)
    n = grad_partials(torch.device(device), M, H, K)
    got = _outputs(n + 1, M, H, K, device)
    d_grad(x, w2, b2, *got, split=split, h=h)
    assert all(torch.isnan(t[n:]).all() and torch.isfinite(t[:n]).all() for t in got)
    _check(got, reference.d_step(x, h, w2, b2, split), n)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("M", [2, 33, 70])
def test_row_chunks_sum_to_float64(device, M):
    """SPLIT = 3 chunks of 16-row blocks and 16-row dW1 tiles (at M = 33 the last chunk is one
    row; at M = 2 one chunk, the other slots untouched); too few slots refused."""
    H, K = 20, 37
    x, _, _, w2, b2, h = d_inputs(M, H, K, device)
    table = [{"kernel": "d_grad", "config": {"BLOCK_M": 16, "BLOCK_K": 16, "SPLIT": 3, "num_warps": 4, "num_stages": 1}}]
    got = _outputs(4, M, H, K, device)
    with configs.use(table):
        n = grad_partials(torch.device(device), M, H, K)
        assert n == min(3, -(-M // 16))
        d_grad(x, w2, b2, *got, split=M // 2 or 1, h=h)
        if n == 3:
            with pytest.raises(ValueError, match="losses has 2 slots but this launch's config splits the rows in 3"):
                d_grad(x, w2, b2, *(t[:2] for t in got), split=M // 2, h=h)
    assert all(torch.isnan(t[n:]).all() for t in got)
    _check(got, reference.d_step(x, h, w2, b2, M // 2 or 1), n)


@pytest.mark.parametrize("device", DEVICES)
def test_extreme_logits_stay_finite(device):
    """Logits of +-1e4 and 50: the losses and gradients are finite and match float64."""
    x = torch.rand(4, 3, device=device)
    h = torch.tensor([[1e4], [0.0], [50.0], [0.0]], device=device)  # h = 0 rows: logit b2
    w2, b2 = torch.ones(1, 1, device=device), torch.tensor([-1e4], device=device)
    got = _outputs(grad_partials(torch.device(device), 4, 1, 3), 4, 1, 3, device)
    d_grad(x, w2, b2, *got, split=2, h=h)
    assert all(torch.isfinite(t).all() for t in got)
    want = reference.d_step(x, h, w2, b2, 2)
    torch.testing.assert_close(got[0].sum(0).double(), want["losses"], rtol=1e-5, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_pre_slots_and_gathered_rows_equal_the_plain_inputs_bitwise(device):
    """pre=(3 slots, b1) finished here as relu(((s0 + s1) + s2) + b1), and the first 9 rows read
    as images[idx] in place: bitwise the outputs of that h and the rows gathered beforehand;
    mismatched slots, h with pre, and a split outside the rows are refused."""
    M, H, K, G = 21, 128, 100, 9
    _, _, b1, w2, b2, _ = d_inputs(M, H, K, device)
    parts = torch.randn(3, M, H, device=device)
    h = torch.relu(((parts[0] + parts[1]) + parts[2]) + b1)
    images, idx = torch.rand(50, K, device=device), torch.randint(0, 50, (G,), device=device)
    x = torch.rand(M - G, K, device=device)
    n = grad_partials(torch.device(device), M, H, K)
    got, want = _outputs(n, M, H, K, device), _outputs(n, M, H, K, device)
    d_grad(x, w2, b2, *got, split=G, pre=(parts, b1), rows=(images, idx))
    d_grad(torch.cat([images[idx], x]), w2, b2, *want, split=G, h=h)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    with pytest.raises(ValueError, match=r"pre's slots must be \(P, 1, 21, 128\)"):
        d_grad(x, w2, b2, *got, split=G, pre=(parts[:, :20], b1), rows=(images, idx))
    with pytest.raises(ValueError, match="pass D1's output h, or h=None and pre"):
        d_grad(x, w2, b2, *got, split=G, h=h, pre=(parts, b1), rows=(images, idx))
    with pytest.raises(ValueError, match="split must be in 1..20"):
        d_grad(x, w2, b2, *got, split=M, h=h, rows=(images, idx))


@pytest.mark.parametrize("device", DEVICES)
def test_runs_equal_each_run_alone_bitwise(device):
    R, M, H, K = 2, 19, 33, 40
    x, _, _, w2, b2, h = d_inputs(M, H, K, device, runs=(R,))
    got = _outputs(2, M, H, K, device, runs=(R,))
    d_grad(x, w2, b2, *got, split=7, h=h)
    for r in range(R):
        one = _outputs(2, M, H, K, device)
        d_grad(x[r], w2[r], b2[r], *one, split=7, h=h[r])
        assert all(torch.equal(a[:, r], b) for a, b in zip(got, one))


def test_bad_inputs_are_refused_in_one_line():
    x, _, _, w2, b2, h = d_inputs(4, 8, 10, "cpu")
    out = _outputs(2, 4, 8, 10, "cpu")
    cases = [
        (lambda: d_grad(x, w2, b2, *out, split=2), "pass D1's output h, or h=None and pre"),
        (lambda: d_grad(x, w2, b2, out[0][0], *out[1:], split=2, h=h), "with partials, losses has a leading axis"),
        (lambda: d_grad(x, w2, b2, out[0], out[1][:, :9], *out[2:], split=2, h=h),
         r"dw1 has shape \(9, 8\), expected \(10, 8\)"),
        (lambda: d_grad(x, w2, b2, *out, split=2, h=h[:, :7]), r"h has shape \(4, 7\), expected \(4, 8\)"),
        (lambda: d_grad(x, w2, b2, *out, split=2, h=h, precision="fp16"), "precision must be one of"),
        (lambda: d_grad(x, torch.empty(512, 1), b2, *out, split=2, h=h), r"h has shape \(4, 8\), expected \(4, 512\)"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            call()
        assert "\n" not in str(err.value)


@requires_cuda
@pytest.mark.parametrize("precision,tol", [("tf32x3", 5e-5), ("tf32", 3e-3)])
def test_tensor_core_precisions_against_float64(precision, tol):
    M, H, K = 256, 128, 784
    x, _, _, w2, b2, h = d_inputs(M, H, K, "cuda")
    n = grad_partials(torch.device("cuda"), M, H, K)
    got = _outputs(n, M, H, K, "cuda")
    d_grad(x, w2, b2, *got, split=128, h=h, precision=precision)
    want = reference.d_step(x, h, w2, b2, 128)
    assert rel_err(got[1].sum(0), want["dw1"]) < tol  # the one product: x^T g
    torch.testing.assert_close(got[0].sum(0).double(), want["losses"], rtol=1e-5, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("M,H,K,split,gamma", [(2, 7, 33, 1, 10.0), (33, 128, 785, 17, 1.0), (129, 33, 100, 64, 0.1),
                                               (256, 128, 784, 128, 1.0), (33, 300, 65, 17, 1.0), (17, 520, 40, 9, 3.0)])
def test_r1_penalty_adds_its_float64_gradients(device, M, H, K, split, gamma):
    """With r1 and w1: dW1 and dw2 gain the R1 penalty's gradients on rows [0, split) (float64
    autograd, a double backward: reference.r1_penalty); b1, b2 and the losses are those without
    it, bitwise. dW1's and dw2's R1 terms are sums of O(gamma / split) terms over the real rows
    (and dw2's also over K): the same 2e-5 normwise bound as the BCE's gradients."""
    x, w1, b1, w2, b2, _ = d_inputs(M, H, K, device)
    b1[0] = 1 + (x @ w1)[:, 0].abs().max()  # unit 0 active on every row: the ReLU mask cannot zero the penalty
    h = torch.relu(x @ w1 + b1)  # (with H = 7 and one real row, all units off had a 1-in-128 chance)
    n = grad_partials(torch.device(device), M, H, K)
    plain, got = _outputs(n, M, H, K, device), _outputs(n, M, H, K, device)
    d_grad(x, w2, b2, *plain, split=split, h=h)
    d_grad(x, w2, b2, *got, split=split, h=h, r1=torch.tensor([gamma], device=device), w1=w1)
    want = reference.d_step(x, h, w2, b2, split)
    dw1_r1, dw2_r1 = reference.r1_penalty(x, h, w1, w2, split, gamma)
    assert rel_err(got[1].sum(0).double(), want["dw1"] + dw1_r1) < 2e-5
    assert rel_err(got[3].sum(0).double(), want["dw2"] + dw2_r1) < 2e-5
    assert rel_err(dw1_r1, torch.zeros_like(dw1_r1)) > 1e-3  # the penalty's term is not lost in the BCE's
    for i in (0, 2, 4):  # losses, db1, db2
        assert torch.equal(got[i], plain[i])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("H", [33, 300])
def test_r1_on_the_first_input_columns_only(device, H):
    """w1 as D1's first K' rows (a conditional D: its pixels, not its label columns): the R1 terms
    are those of the penalty on x's first K' columns (float64 autograd); dW1's other rows get the
    BCE's gradient alone."""
    M, K, Kp, split, gamma = 40, 75, 64, 20, 2.0
    x, w1, b1, w2, b2, _ = d_inputs(M, H, K, device)
    b1[0] = 1 + (x @ w1)[:, 0].abs().max()  # unit 0 active on every row: the penalty is never zero
    h = torch.relu(x @ w1 + b1)
    n = grad_partials(torch.device(device), M, H, K)
    got = _outputs(n, M, H, K, device)
    d_grad(x, w2, b2, *got, split=split, h=h, r1=torch.tensor([gamma], device=device), w1=w1[:Kp])
    want = reference.d_step(x, h, w2, b2, split)
    dw1_r1, dw2_r1 = reference.r1_penalty(x[:, :Kp], h, w1[:Kp], w2, split, gamma)
    dw1 = got[1].sum(0).double()
    assert rel_err(dw1[:Kp], want["dw1"][:Kp] + dw1_r1) < 2e-5 and rel_err(dw1[Kp:], want["dw1"][Kp:]) < 2e-5
    assert rel_err(got[3].sum(0).double(), want["dw2"] + dw2_r1) < 2e-5


@pytest.mark.parametrize("device", DEVICES)
def test_r1_runs_equal_each_run_alone_bitwise(device):
    """Runs of a sweep with their own gammas (0: off) equal each run alone; a gamma of 0 gives
    the outputs without the penalty."""
    R, M, H, K = 3, 40, 33, 50
    x, w1, _, w2, b2, h = d_inputs(M, H, K, device, runs=(R,))
    gammas = torch.tensor([1.0, 0.0, 10.0], device=device)
    got = _outputs(2, M, H, K, device, runs=(R,))
    d_grad(x, w2, b2, *got, split=20, h=h, r1=gammas, w1=w1)
    for r in range(R):
        one = _outputs(2, M, H, K, device)
        d_grad(x[r], w2[r], b2[r], *one, split=20, h=h[r], r1=gammas[r : r + 1], w1=w1[r])
        assert all(torch.equal(a[:, r], b) for a, b in zip(got, one))
    off = _outputs(2, M, H, K, device)
    d_grad(x[1], w2[1], b2[1], *off, split=20, h=h[1])
    assert all(torch.equal(a[:, 1], b) for a, b in zip(got, off))


def test_r1_needs_gamma_and_w1_in_one_line():
    x, w1, _, w2, b2, h = d_inputs(4, 8, 10, "cpu")
    out = _outputs(2, 4, 8, 10, "cpu")
    for kwargs, message in (({"r1": torch.ones(1)}, "needs both r1"), ({"r1": torch.ones(2), "w1": w1},
                                                                       r"one gamma per run, contiguous: shape \(1,\)"),
                            ({"r1": torch.ones(1), "w1": torch.cat([w1, w1[:1]])},
                             r"w1 must be D1's weight \(K, H\) = \(10, 8\) or its first rows, got \(11, 8\)"),
                            ({"r1": torch.ones(1), "w1": w1[:, :7]}, r"w1 has shape \(10, 7\), expected \(10, 8\)")):
        with pytest.raises(ValueError, match=message) as err:
            d_grad(x, w2, b2, *out, split=2, h=h, **kwargs)
        assert "\n" not in str(err.value)
