"""D's output layer fused with the D step's loss and its backward: logits = h @ w + b (w: (H, 1)),
the mean sigmoid cross-entropy of each part, and the gradients d h, d w, d b, in one launch.

Fused
  The D2 linear (H -> 1), both BCE means (rows [0, split) against target t0, rows [split, M)
  against t1: D's real and fake halves in one call), d loss / d logits (never stored), and
  its backward: dh = dlogit w^T (the input of D1's backward), dw = h^T dlogit, db = sum dlogit.
  A GAN D step would otherwise launch a linear forward, a loss, a loss backward and a linear
  backward for this 128 -> 1 layer: four dependent launches become one.

Outputs (loss_ptr, contiguous): [mean0 + mean1, mean0, mean1] (the seed's d_loss, d_real_loss,
d_fake_loss). Gradients are of the sum mean0 + mean1. (The G step's pass through D, one part and
no D gradients, is kernels.d_input_grad: it goes on to D's input in the same launch.)

D1 finished here (`pre=(slots, b1)`): h is computed as relu(sum of the slots in order + b1) from
D1's split-K forward (kernels.linear_act, partials=True) and written to `h` for D1's backward,
so D1's bias and ReLU cost no launch and its 784-deep product can be cut into chunks.

Split over rows (`partials=True`): the rows are cut into SPLIT chunks (a config value;
`head_partials` says how many), one program each; losses, dw and db carry a leading axis of
P >= SPLIT slots and chunk s writes slot s: its share of each mean (already divided by the part's
row count) and its partial dw, db. Slots past SPLIT are left alone: the caller keeps them zero and
adds the slots in order (fastgan's trainer: Adam for dw, db; one sum per replay for the logged
losses). No atomics: deterministic. Without partials one program per run walks all rows (at
batch 8192, 16,384 rows, 8 MB through one SM: the reason for the split).

Limits: H <= 1024 (one block of columns). Not yet timed on a GPU: see benchmarks/NOTES.md.
"""

import triton
import triton.language as tl

from . import configs
from ._checks import (
    as_runs,
    check_devices,
    check_run_dense,
    check_runs,
    check_slots,
    slots,
)
from .sigmoid_bce import _bce_and_grad

MAX_H = 1024
FP_FUSION = True  # FMA contraction, set explicitly (Triton 3.10 changes its default)


@triton.jit
def _d1_output(h_ptr, pre_ptr, b1, offs, mask, stride_pres, PRE_PARTS: tl.constexpr):
    """D1's output h at offsets `offs` (0 outside `mask`): loaded from h, or with PRE_PARTS > 0
    finished from D1's split-K forward: relu(its slots summed in slot order + b1)."""
    if PRE_PARTS > 0:
        h = tl.load(pre_ptr + offs, mask=mask, other=0.0)
        for s in tl.static_range(1, PRE_PARTS):
            h += tl.load(pre_ptr + s * stride_pres + offs, mask=mask, other=0.0)
        return tl.where(mask, tl.maximum(h + b1[None, :], 0.0), 0.0)
    else:
        return tl.load(h_ptr + offs, mask=mask, other=0.0)


@triton.jit
def _d_head_kernel(
    h_ptr,  # (R, M, H) D1's output (ReLU applied), contiguous within a run: read, or written if PRE_PARTS
    pre_ptr,  # (PRE_PARTS, R, M, H) D1's raw K-chunk sums, contiguous within a run (only if PRE_PARTS)
    b1_ptr,  # (R, H) D1's bias (only if PRE_PARTS)
    w_ptr,  # (R, H, 1) D2 weight
    b_ptr,  # (R, 1) D2 bias
    loss_ptr,  # (P, R, 3) out: per slot and run (see module doc), contiguous within a run
    dh_ptr,  # (R, M, H) out: d loss / d h, contiguous within a run
    dw_ptr,  # (P, R, H, 1) out: d loss / d w per slot
    db_ptr,  # (P, R, 1) out: d loss / d b per slot
    M, H,
    split,  # rows [0, split) are part 0, [split, M) part 1
    t0, t1,  # constant targets of the two parts
    stride_w,  # w's stride along H in elements
    stride_hr, stride_wr, stride_br, stride_lr, stride_dhr, stride_dwr, stride_dbr,  # run strides
    stride_lp, stride_dwp, stride_dbp,  # slot strides of the losses, dw and db
    stride_prer, stride_pres, stride_b1r, stride_b1,  # pre's run and slot strides, b1's strides
    PRE_PARTS: tl.constexpr,  # 0: h is given; n: h = relu(sum of n slots of pre + b1), written to h
    BLOCK_M: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    part = tl.program_id(0)  # a chunk of rows: slot `part` of the partial outputs
    run = tl.program_id(1)  # one GAN of a sweep
    h_ptr += run * stride_hr
    pre_ptr += run * stride_prer
    b1_ptr += run * stride_b1r
    w_ptr += run * stride_wr
    b_ptr += run * stride_br
    loss_ptr += run * stride_lr + part * stride_lp
    dh_ptr += run * stride_dhr
    dw_ptr += run * stride_dwr + part * stride_dwp
    db_ptr += run * stride_dbr + part * stride_dbp
    rows_per_part = tl.cdiv(tl.cdiv(M, BLOCK_M), tl.num_programs(0)) * BLOCK_M
    m_lo = part * rows_per_part
    m_hi = tl.minimum(m_lo + rows_per_part, M)
    cols = tl.arange(0, BLOCK_H)
    cmask = cols < H
    w = tl.load(w_ptr + cols * stride_w, mask=cmask, other=0.0)
    b1 = tl.load(b1_ptr + cols * stride_b1, mask=cmask & (PRE_PARTS > 0), other=0.0)
    b = tl.load(b_ptr)
    inv0 = 1.0 / split
    inv1 = 1.0 / (M - split)
    acc0 = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc1 = tl.zeros((BLOCK_M,), dtype=tl.float32)
    dw = tl.zeros((BLOCK_H,), dtype=tl.float32)
    db = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for m0 in range(m_lo, m_hi, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        rmask = rows < M
        mask = rmask[:, None] & cmask[None, :]
        offs = rows[:, None] * H + cols[None, :]
        h = _d1_output(h_ptr, pre_ptr, b1, offs, mask, stride_pres, PRE_PARTS)
        if PRE_PARTS > 0:
            tl.store(h_ptr + offs, h, mask=mask)  # for D1's backward
        logit = tl.sum(h * w[None, :], axis=1) + b
        in0 = rows < split
        target = tl.where(in0, t0, t1)
        loss, diff = _bce_and_grad(logit, target)
        acc0 += tl.where(rmask & in0, loss, 0.0)
        acc1 += tl.where(rmask & (rows >= split), loss, 0.0)
        dlogit = tl.where(rmask, diff * tl.where(in0, inv0, inv1), 0.0)
        tl.store(dh_ptr + rows[:, None] * H + cols[None, :], dlogit[:, None] * w[None, :], mask=mask)
        dw += tl.sum(h * dlogit[:, None], axis=0)
        db += dlogit
    mean0 = tl.sum(acc0, axis=0) * inv0
    mean1 = tl.sum(acc1, axis=0) * inv1
    tl.store(loss_ptr, mean0 + mean1)
    tl.store(loss_ptr + 1, mean0)
    tl.store(loss_ptr + 2, mean1)
    tl.store(dw_ptr + cols * stride_w, dw, mask=cmask)
    tl.store(db_ptr, tl.sum(db, axis=0))


def d1_slots(op, pre, R, M, H):
    """pre=(slots (P, [R,] M, H), b1 ([R,] H)): D1's split-K raw sums and its bias, checked;
    returns (slot 0 as (R, M, H), P, the slot stride, b1 as (R, H)) for a _d1_output kernel."""
    first, parts, stride = slots(op, "pre", pre[0], 2)
    first = as_runs(op, "pre", first, 2)
    if tuple(first.shape) != (R, M, H) or first.stride()[1:] != (H, 1):
        raise ValueError(f"{op}: pre's slots must be (P, {R}, {M}, {H}), contiguous within each run; got a slot "
                         f"of shape {tuple(first.shape)}, strides {first.stride()}")
    b1 = as_runs(op, "b1", pre[1], 1)
    check_runs(op, "b1", b1, R, (H,))
    return first, parts, stride, b1


def _row_chunks(cfg, M):
    """The row chunks a config cuts M rows into: SPLIT, at most one per row block."""
    return max(1, min(cfg["SPLIT"], triton.cdiv(M, cfg["BLOCK_M"])))


def head_partials(device, M, H):
    """How many slots a split d_head (partials=True) writes for M rows of width H."""
    return _row_chunks(configs.lookup("d_head", device, M=M, N=1, K=H), M)


def d_head(h, w, b, losses, dh, dw, db, split, t0=1.0, t1=0.0, partials=False, pre=None):
    """One launch: the losses of logits = h @ w + b and their gradients (see module doc).

    Rows [0, split) are scored against t0 and the rest against t1; `losses` gets 3 elements.
    R runs at once: every tensor with a leading run axis.
    partials=True: losses, dw and db with a leading axis of P >= head_partials(...) slots, summed
    by the caller (see module doc); otherwise one program per run, complete results.
    pre=(slots, b1): h is not read but computed, relu(sum of slots (P, [R,] M, H) + b1 ([R,] H)),
    and written (see module doc).
    """
    op = "d_head"
    h, w, b = as_runs(op, "h", h, 2), as_runs(op, "w", w, 2), as_runs(op, "b", b, 1)
    R, M, H = h.shape
    if H > MAX_H:
        raise ValueError(f"{op}: hidden width {H} exceeds {MAX_H}; the kernel holds one row in a block")
    check_runs(op, "w", w, R, (H, 1))
    check_runs(op, "b", b, R, (1,))
    check_run_dense(op, "h", h)
    if not 0 < split < M:
        raise ValueError(f"{op}: split must be in 1..{M - 1} (both parts non-empty), got {split}")
    n_slots, slot_strides = {}, {"losses": 0, "dw": 0, "db": 0}
    if partials:
        losses, n_slots["losses"], slot_strides["losses"] = slots(op, "losses", losses, 1)
        dw, n_slots["dw"], slot_strides["dw"] = slots(op, "dw", dw, 2)
        db, n_slots["db"], slot_strides["db"] = slots(op, "db", db, 1)
    losses, dh = as_runs(op, "losses", losses, 1), as_runs(op, "dh", dh, 2)
    check_runs(op, "losses", losses, R, (3,))
    check_run_dense(op, "losses", losses)
    check_runs(op, "dh", dh, R, (M, H))
    check_run_dense(op, "dh", dh)
    dw, db = as_runs(op, "dw", dw, 2), as_runs(op, "db", db, 1)
    check_runs(op, "dw", dw, R, (H, 1))
    check_runs(op, "db", db, R, (1,))
    pre_slots, pre_parts, stride_pp, b1 = d1_slots(op, pre, R, M, H) if pre is not None else (None, 0, 0, None)
    check_devices(op, h=h, w=w, b=b, losses=losses, dh=dh, dw=dw, db=db, pre=pre_slots, b1=b1)
    cfg = configs.lookup("d_head", h.device, M=M, N=1, K=H)
    n_split = _row_chunks(cfg, M) if partials else 1
    del cfg["SPLIT"]
    for name, n in n_slots.items():
        check_slots(op, name, n, n_split, "splits the rows in", "kernels.d_head.head_partials")
    return _d_head_kernel[(n_split, R)](
        h, pre_slots if pre is not None else h, b1 if pre is not None else h, w, b, losses, dh, dw, db,
        M, H, split, float(t0), float(t1), w.stride(1),
        h.stride(0), w.stride(0), b.stride(0), losses.stride(0), dh.stride(0), dw.stride(0), db.stride(0),
        slot_strides["losses"], slot_strides["dw"], slot_strides["db"],
        pre_slots.stride(0) if pre is not None else 0, stride_pp,
        b1.stride(0) if pre is not None else 0, b1.stride(1) if pre is not None else 0,
        PRE_PARTS=pre_parts, BLOCK_H=triton.next_power_of_2(H), enable_fp_fusion=FP_FUSION, **cfg,
    )
