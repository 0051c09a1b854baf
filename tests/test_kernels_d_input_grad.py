"""kernels.d_input_grad (D's loss against a constant target and its gradient to D's input, in
one launch) against float64 autograd.

The reference takes D1's output h as the kernel sees it (float32, widened) and differentiates
the rest in float64: logit = h w2 + b2, the mean BCE against t, and dx through D1's ReLU mask
[h > 0] and W1. (Recomputing h in float64 from x could flip the mask of an element whose
pre-activation rounds across 0, an O(1) difference that is not the kernel's.)

Tolerances as in test_kernels_d_grad: the loss is an fp32 mean (1e-5 relative); dx is an fp32
dot product over H <= 128 terms of O(1/M) gradients times O(1) weights: 2e-5 normwise relative
(a wrong row, column or mask gives O(1)). TF32 on a GPU: 3e-3 and 5e-5 as in
test_kernels_linear_act.
"""


import pytest
import reference
import torch
from conftest import DEVICES, requires_cuda
from fastgan.kernels import configs, d_input_grad
from fastgan.kernels.d_input_grad import input_grad_partials
from helpers import d_inputs, rel_err

NAN = float("nan")


def _outputs(slots, M, K, device, runs=()):
    return torch.full((slots, *runs, 1), NAN, device=device), torch.full((*runs, M, K), NAN, device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("M,H,K,t", [(1, 7, 33, 1.0), (7, 128, 785, 1.0), (33, 33, 100, 0.0), (129, 128, 784, 0.3),
                                     (33, 300, 65, 1.0), (17, 1024, 33, 0.0), (5, 129, 40, 1.0)])  # past WHOLE_H: tiles
def test_matches_float64(device, M, H, K, t):
    """Every element of dx written (poisoned with NaN before), the loss slots past the row split
    left alone, their sum the float64 mean."""
    _, w1, _, w2, b2, h = d_inputs(M, H, K, device)
    n = input_grad_partials(torch.device(device), M, H, K)
    losses, dx = _outputs(n + 1, M, K, device)
    d_input_grad(h, w1, w2, b2, losses, dx, t=t)
    want_loss, want_dx = reference.d_input(h, w1, w2, b2, t)
    assert torch.isnan(losses[n:]).all() and torch.isfinite(losses[:n]).all()
    torch.testing.assert_close(losses[:n].sum(0)[0].double(), want_loss, rtol=1e-5, atol=0)
    assert torch.isfinite(dx).all() and rel_err(dx, want_dx) < 2e-5


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("M", [2, 33, 70])
def test_row_chunks_sum_to_float64(device, M):
    """SPLIT = 3 chunks of 16-row blocks and 16-wide dx tiles (at M = 33 the last chunk is one row;
    at M = 2 one chunk, the other slots untouched); too few slots refused."""
    H, K = 20, 37
    _, w1, _, w2, b2, h = d_inputs(M, H, K, device)
    table = [{"kernel": "d_input_grad",
              "config": {"BLOCK_M": 16, "BLOCK_K": 16, "SPLIT": 3, "num_warps": 4, "num_stages": 1}}]
    losses, dx = _outputs(4, M, K, device)
    with configs.use(table):
        n = input_grad_partials(torch.device(device), M, H, K)
        assert n == min(3, -(-M // 16))
        d_input_grad(h, w1, w2, b2, losses, dx)
        if n == 3:
            with pytest.raises(ValueError, match="losses has 2 slots but this launch's config splits the rows in 3"):
                d_input_grad(h, w1, w2, b2, losses[:2], dx)
    want_loss, want_dx = reference.d_input(h, w1, w2, b2, 1.0)
    assert torch.isnan(losses[n:]).all()
    torch.testing.assert_close(losses[:n].sum(0)[0].double(), want_loss, rtol=1e-5, atol=0)
    assert rel_err(dx, want_dx) < 2e-5


@pytest.mark.parametrize("device", DEVICES)
def test_pre_slots_equal_the_finished_h_bitwise(device):
    """pre=(3 slots, b1): D1 finished here as relu(((s0 + s1) + s2) + b1) gives bitwise the loss
    and dx of that h computed beforehand; mismatched slots and h with pre are refused."""
    M, H, K = 21, 128, 100
    _, w1, b1, w2, b2, _ = d_inputs(M, H, K, device)
    parts = torch.randn(3, M, H, device=device)
    h = torch.relu(((parts[0] + parts[1]) + parts[2]) + b1)
    got, want = _outputs(2, M, K, device), _outputs(2, M, K, device)
    d_input_grad(None, w1, w2, b2, *got, pre=(parts, b1))
    d_input_grad(h, w1, w2, b2, *want)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    with pytest.raises(ValueError, match=r"pre's slots must be \(P, 1, 21, 128\)"):
        d_input_grad(None, w1, w2, b2, *got, pre=(parts[:, :20], b1))
    with pytest.raises(ValueError, match="pass D1's output h, or h=None and pre"):
        d_input_grad(h, w1, w2, b2, *got, pre=(parts, b1))


@pytest.mark.parametrize("device", DEVICES)
def test_runs_equal_each_run_alone_bitwise(device):
    R, M, H, K = 2, 19, 33, 40
    _, w1, _, w2, b2, h = d_inputs(M, H, K, device, runs=(R,))
    losses, dx = _outputs(2, M, K, device, runs=(R,))
    d_input_grad(h, w1, w2, b2, losses, dx)
    for r in range(R):
        one = _outputs(2, M, K, device)
        d_input_grad(h[r], w1[r], w2[r], b2[r], *one)
        assert torch.equal(losses[:, r], one[0]) and torch.equal(dx[r], one[1])


@pytest.mark.parametrize("device", DEVICES)
def test_bad_inputs_are_refused_in_one_line(device):
    _, w1, _, w2, b2, h = d_inputs(4, 8, 10, device)
    losses, dx = _outputs(2, 4, 10, device)
    cases = [
        (lambda: d_input_grad(None, w1, w2, b2, losses, dx), "pass D1's output h, or h=None and pre"),
        (lambda: d_input_grad(h, w1, w2, b2, losses[0], dx), "with partials, losses has a leading axis of slots"),
        (lambda: d_input_grad(h, w1, w2, b2, losses, dx[:, :9]), r"dx has shape \(4, 9\), expected \(4, 10\)"),
        (lambda: d_input_grad(h, w1, w2[:4], b2, losses, dx), r"w2 has shape \(4, 1\), expected \(8, 1\)"),
        (lambda: d_input_grad(h, w1, w2, b2, losses, dx, precision="bf16"), "precision must be one of"),
        (lambda: d_input_grad(h, torch.empty(10, 512, device=device), torch.empty(512, 1, device=device), b2, losses,
                              dx), r"h has shape \(4, 8\), expected \(4, 512\)"),  # a wide D needs h as wide
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            call()
        assert "\n" not in str(err.value)


@requires_cuda
@pytest.mark.parametrize("precision,tol", [("tf32x3", 5e-5), ("tf32", 3e-3)])
def test_tensor_core_precisions_against_float64(precision, tol):
    M, H, K = 128, 128, 784
    _, w1, _, w2, b2, h = d_inputs(M, H, K, "cuda")
    losses, dx = _outputs(input_grad_partials(torch.device("cuda"), M, H, K), M, K, "cuda")
    d_input_grad(h, w1, w2, b2, losses, dx, precision=precision)
    want_loss, want_dx = reference.d_input(h, w1, w2, b2, 1.0)
    torch.testing.assert_close(losses.sum(0)[0].double(), want_loss, rtol=1e-5, atol=0)
    assert rel_err(dx, want_dx) < tol
