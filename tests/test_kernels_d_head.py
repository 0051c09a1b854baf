"""kernels.d_head (D2 linear + BCE means + backward in one launch) against float64 autograd.

Tolerances as in test_kernels_sigmoid_bce: losses are fp32 means (1e-5 relative); gradients are
fp32 sums over at most M rows of O(1/M) terms: 2e-5 normwise relative.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICES
from helpers import rel_err

from kernels import d_head


def _inputs(M, H, device):
    h = torch.relu(torch.randn(M, H, device=device))
    w = torch.randn(H, 1, device=device) / math.sqrt(H / 2)
    b = torch.randn(1, device=device)
    return h, w, b


def _reference(h, w, b, split, t0, t1):
    hd, wd, bd = (t.detach().double().requires_grad_() for t in (h, w, b))
    logit = hd @ wd + bd
    parts = [F.binary_cross_entropy_with_logits(logit[:split], torch.full_like(logit[:split], t0)),
             F.binary_cross_entropy_with_logits(logit[split:], torch.full_like(logit[split:], t1))]
    total = sum(parts)
    total.backward()
    return torch.stack([total] + parts), hd.grad, wd.grad, bd.grad


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("M,H,split", [(2, 7, 1), (33, 128, 17), (256, 128, 128), (129, 33, 128), (7, 1, 3)])
def test_matches_float64(device, M, H, split):
    h, w, b = _inputs(M, H, device)
    losses = torch.full((3,), float("nan"), device=device)
    dh, dw, db = torch.full((M, H), float("nan"), device=device), torch.full((H, 1), float("nan"), device=device), torch.full((1,), float("nan"), device=device)
    d_head(h, w, b, losses, dh, dw, db, split=split, t0=1.0, t1=0.0)
    want, dh_ref, dw_ref, db_ref = _reference(h, w, b, split, 1.0, 0.0)
    torch.testing.assert_close(losses.double(), want.detach(), rtol=1e-5, atol=0)
    for got, ref in ((dh, dh_ref), (dw, dw_ref), (db, db_ref)):
        assert torch.isfinite(got).all() and rel_err(got, ref) < 2e-5


@pytest.mark.parametrize("device", DEVICES)
def test_extreme_logits(device):
    h = torch.tensor([[1e4], [-1e4], [0.0], [50.0]], device=device)
    w, b = torch.ones(1, 1, device=device), torch.zeros(1, device=device)
    losses, dh = torch.empty(3, device=device), torch.empty(4, 1, device=device)
    dw, db = torch.empty(1, 1, device=device), torch.empty(1, device=device)
    d_head(h, w, b, losses, dh, dw, db, split=2)
    want, dh_ref, dw_ref, db_ref = _reference(h, w, b, 2, 1.0, 0.0)
    assert torch.isfinite(losses).all() and torch.isfinite(dh).all()
    torch.testing.assert_close(losses.double(), want.detach(), rtol=1e-5, atol=0)


def test_rejects_bad_arguments():
    h, w, b = _inputs(4, 8, "cpu")
    dw, db = torch.empty(8, 1), torch.empty(1)
    with pytest.raises(ValueError, match="split must be in 1..3"):
        d_head(h, w, b, torch.empty(3), torch.empty(4, 8), dw, db, split=4)
    with pytest.raises(ValueError, match=r"losses has shape \(1,\), expected \(3,\)"):
        d_head(h, w, b, torch.empty(1), torch.empty(4, 8), dw, db, split=2)
    with pytest.raises(ValueError, match=r"w has shape \(8, 2\), expected \(8, 1\)"):
        d_head(h, torch.empty(8, 2), b, torch.empty(3), torch.empty(4, 8), dw, db, split=2)
    with pytest.raises(ValueError, match=r"dw has shape \(8, 2\), expected \(8, 1\)"):
        d_head(h, w, b, torch.empty(3), torch.empty(4, 8), torch.empty(8, 2), db, split=2)
    with pytest.raises(ValueError, match="hidden width 2048 exceeds 1024"):
        d_head(torch.empty(4, 2048), torch.empty(2048, 1), b, torch.empty(3), torch.empty(4, 2048), torch.empty(2048, 1),
               db, split=2)


@pytest.mark.parametrize("device", DEVICES)
def test_runs_in_one_launch_equal_each_run_alone(device):
    """One program per run: each run's losses and gradients bitwise those of the run alone,
    with the losses written into rows 4 floats apart (a sweep's (K, R, 4) log)."""
    R, M, H = 3, 10, 16
    h = torch.rand(R, M, H, device=device)
    w, b = torch.randn(R, H, 1, device=device), torch.randn(R, 1, device=device)
    log = torch.full((R, 4), float("nan"), device=device)
    dh, dw, db = torch.empty(R, M, H, device=device), torch.empty(R, H, 1, device=device), torch.empty(R, 1, device=device)
    d_head(h, w, b, log[:, :3], dh, dw, db, split=4)
    for r in range(R):
        l1, dh1, dw1, db1 = (torch.empty(3, device=device), torch.empty(M, H, device=device),
                             torch.empty(H, 1, device=device), torch.empty(1, device=device))
        d_head(h[r], w[r], b[r], l1, dh1, dw1, db1, split=4)
        for got, want in ((log[r, :3], l1), (dh[r], dh1), (dw[r], dw1), (db[r], db1)):
            assert torch.equal(got, want)
    assert torch.isnan(log[:, 3]).all()  # nothing written past each run's three losses


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("M,split", [(70, 35), (33, 5), (2, 1)])
def test_row_chunks_sum_to_float64(device, M, split):
    """partials=True, 3 row chunks of 16-row blocks into 4 slots (at M = 33 the last chunk is one
    row, at M = 2 one chunk: the other slots untouched): the slots sum to the float64 losses
    (each a share of its mean) and gradients; the slot past the split is left as it was; a
    2-run launch into slots equals each run alone bitwise."""
    from kernels import configs
    from kernels.d_head import head_partials

    H = 20
    h, w, b = _inputs(M, H, device)
    table = [{"kernel": "d_head", "config": {"BLOCK_M": 16, "SPLIT": 3, "num_warps": 4}}]
    losses, dw, db = (torch.full((4, *s), float("nan"), device=device) for s in ((3,), (H, 1), (1,)))
    dh = torch.empty(M, H, device=device)
    with configs.use(table):
        n = head_partials(torch.device(device), M, H)
        assert n == min(3, -(-M // 16))
        losses[:n], dw[:n], db[:n] = 0.0, 0.0, 0.0
        d_head(h, w, b, losses, dh, dw, db, split=split, partials=True)
        if n == 3:
            with pytest.raises(ValueError, match="has 2 slots but this launch's config splits the rows in 3"):
                d_head(h, w, b, losses[:2], dh, dw[:2], db[:2], split=split, partials=True)
        h2, w2, b2 = torch.stack([h, h.flip(0)]), torch.stack([w, -w]), torch.stack([b, b + 1])
        l2, dw2, db2 = (torch.zeros(n, 2, *s, device=device) for s in ((3,), (H, 1), (1,)))
        d_head(h2, w2, b2, l2, torch.empty(2, M, H, device=device), dw2, db2, split=split, partials=True)
        for r in range(2):
            l1, dw1, db1 = (torch.zeros(n, *s, device=device) for s in ((3,), (H, 1), (1,)))
            d_head(h2[r], w2[r], b2[r], l1, torch.empty(M, H, device=device), dw1, db1, split=split, partials=True)
            assert torch.equal(l2[:, r], l1) and torch.equal(dw2[:, r], dw1) and torch.equal(db2[:, r], db1)
    assert torch.isnan(losses[n:]).all() and torch.isnan(dw[n:]).all()
    want, dh_ref, dw_ref, db_ref = _reference(h, w, b, split, 1.0, 0.0)
    torch.testing.assert_close(losses[:n].sum(0).double(), want.detach(), rtol=1e-5, atol=1e-7)
    for got, ref in ((dh, dh_ref), (dw[:n].sum(0), dw_ref), (db[:n].sum(0), db_ref)):
        assert rel_err(got, ref) < 2e-5


@pytest.mark.parametrize("device", DEVICES)
def test_finishes_d1_from_its_k_chunk_slots(device):
    """pre=(slots, b1): h = relu(sum of the slots + b1) is written to h and used; the losses and
    gradients are those of d_head on that h, computed the plain way (bitwise: same numbers, same order)."""
    M, H = 40, 24
    slots, b1 = torch.randn(3, M, H, device=device), torch.randn(H, device=device)
    _, w, b = _inputs(M, H, device)
    h = torch.full((M, H), float("nan"), device=device)
    losses, dh, dw, db = (torch.empty(*s, device=device) for s in ((3,), (M, H), (H, 1), (1,)))
    d_head(h, w, b, losses, dh, dw, db, split=17, pre=(slots, b1))
    want_h = torch.relu(((slots[0] + slots[1]) + slots[2]) + b1)
    assert torch.equal(h, want_h)
    l2, dh2, dw2, db2 = (torch.empty(*s, device=device) for s in ((3,), (M, H), (H, 1), (1,)))
    d_head(want_h, w, b, l2, dh2, dw2, db2, split=17)
    for got, want in ((losses, l2), (dh, dh2), (dw, dw2), (db, db2)):
        assert torch.equal(got, want)
    with pytest.raises(ValueError, match=r"pre's slots must be \(P, 1, 40, 24\)"):
        d_head(h, w, b, losses, dh, dw, db, split=17, pre=(slots[:, :, :5], b1))
