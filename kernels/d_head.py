"""D's output layer fused with the loss and its backward: logits = h @ w + b (w: (H, 1)),
mean sigmoid cross-entropy per part, and the gradients d h, d w, d b, in one launch.

Fused
  The D2 linear (H -> 1), both BCE means (rows [0, split) against target t0, rows [split, M)
  against t1: D's real and fake halves in one call), d loss / d logits (never stored), and
  its backward: dh = dlogit w^T (the input of D1's backward), dw = h^T dlogit, db = sum dlogit.
  A GAN D step would otherwise launch a linear forward, a loss, a loss backward and a linear
  backward for this 128 -> 1 layer: four dependent launches become one.

Outputs (loss_ptr, contiguous): TWO_PARTS: [mean0 + mean1, mean0, mean1] (the seed's d_loss,
d_real_loss, d_fake_loss); otherwise [mean0] (G's loss, split = M). Gradients are of the sum
mean0 + mean1. NEED_DW=False skips dw and db (the G step does not update D).

Limits: H <= 1024 (one block of columns); one program walks all M rows, so the sums are
deterministic and need no atomics. At batch 128 (M = 256) that is 128 KB read once; at batch
8192 (M = 16384, 8 MB) a single program becomes the bottleneck and a split-M version with a
second reduction would pay. Not yet timed on a GPU: see benchmarks/NOTES.md.
"""

import triton
import triton.language as tl

from . import configs
from ._checks import as_runs, check_devices, check_run_dense, check_runs
from .sigmoid_bce import _log1p_small

MAX_H = 1024
FP_FUSION = True  # FMA contraction, set explicitly (Triton 3.10 changes its default)


@triton.jit
def _d_head_kernel(
    h_ptr,  # (R, M, H) D1's output (ReLU applied), contiguous within a run
    w_ptr,  # (R, H, 1) D2 weight
    b_ptr,  # (R, 1) D2 bias
    loss_ptr,  # out: per run 3 floats if TWO_PARTS else 1 (see module doc), contiguous within a run
    dh_ptr,  # (R, M, H) out: d loss / d h, contiguous within a run
    dw_ptr,  # (R, H, 1) out: d loss / d w (only if NEED_DW)
    db_ptr,  # (R, 1) out: d loss / d b (only if NEED_DW)
    M, H,
    split,  # rows [0, split) are part 0, [split, M) part 1
    t0, t1,  # constant targets of the two parts
    stride_w,  # w's stride along H in elements
    stride_hr, stride_wr, stride_br, stride_lr, stride_dhr, stride_dwr, stride_dbr,  # run strides
    TWO_PARTS: tl.constexpr,
    NEED_DW: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    run = tl.program_id(0)  # one GAN of a sweep per program
    h_ptr += run * stride_hr
    w_ptr += run * stride_wr
    b_ptr += run * stride_br
    loss_ptr += run * stride_lr
    dh_ptr += run * stride_dhr
    dw_ptr += run * stride_dwr
    db_ptr += run * stride_dbr
    cols = tl.arange(0, BLOCK_H)
    cmask = cols < H
    w = tl.load(w_ptr + cols * stride_w, mask=cmask, other=0.0)
    b = tl.load(b_ptr)
    inv0 = 1.0 / split
    inv1 = 1.0 / tl.maximum(M - split, 1)
    acc0 = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc1 = tl.zeros((BLOCK_M,), dtype=tl.float32)
    dw = tl.zeros((BLOCK_H,), dtype=tl.float32)
    db = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for m0 in range(0, M, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        rmask = rows < M
        mask = rmask[:, None] & cmask[None, :]
        h = tl.load(h_ptr + rows[:, None] * H + cols[None, :], mask=mask, other=0.0)
        logit = tl.sum(h * w[None, :], axis=1) + b
        in0 = rows < split
        target = tl.where(in0, t0, t1)
        e = tl.exp(-tl.abs(logit))
        loss = tl.maximum(logit, 0.0) - logit * target + _log1p_small(e)
        acc0 += tl.where(rmask & in0, loss, 0.0)
        acc1 += tl.where(rmask & (rows >= split), loss, 0.0)
        s = e / (1.0 + e)  # sigmoid(l) - t without cancellation, as in sigmoid_bce
        diff = tl.where(logit >= 0, (1.0 - target) - s, s - target)
        dlogit = tl.where(rmask, diff * tl.where(in0, inv0, inv1), 0.0)
        tl.store(dh_ptr + rows[:, None] * H + cols[None, :], dlogit[:, None] * w[None, :], mask=mask)
        if NEED_DW:
            dw += tl.sum(h * dlogit[:, None], axis=0)
            db += dlogit
    mean0 = tl.sum(acc0, axis=0) * inv0
    if TWO_PARTS:
        mean1 = tl.sum(acc1, axis=0) * inv1
        tl.store(loss_ptr, mean0 + mean1)
        tl.store(loss_ptr + 1, mean0)
        tl.store(loss_ptr + 2, mean1)
    else:
        tl.store(loss_ptr, mean0)
    if NEED_DW:
        tl.store(dw_ptr + cols * stride_w, dw, mask=cmask)
        tl.store(db_ptr, tl.sum(db, axis=0))


def d_head(h, w, b, losses, dh, dw=None, db=None, split=None, t0=1.0, t1=0.0):
    """One launch: the losses of logits = h @ w + b and their gradients (see module doc).

    split=None means one part (all rows against t0) and `losses` has 1 element; otherwise rows
    [0, split) are scored against t0 and the rest against t1, and `losses` has 3 elements.
    R runs at once: every tensor with a leading run axis, one program per run.
    """
    op = "d_head"
    h, w, b = as_runs(op, "h", h, 2), as_runs(op, "w", w, 2), as_runs(op, "b", b, 1)
    R, M, H = h.shape
    if H > MAX_H:
        raise ValueError(f"{op}: hidden width {H} exceeds {MAX_H}; the kernel holds one row in a block")
    check_runs(op, "w", w, R, (H, 1))
    check_runs(op, "b", b, R, (1,))
    check_run_dense(op, "h", h)
    two = split is not None
    if two and not 0 < split < M:
        raise ValueError(f"{op}: split must be in 1..{M - 1} (both parts non-empty), got {split}")
    losses, dh = as_runs(op, "losses", losses, 1), as_runs(op, "dh", dh, 2)
    check_runs(op, "losses", losses, R, (3 if two else 1,))
    check_run_dense(op, "losses", losses)
    check_runs(op, "dh", dh, R, (M, H))
    check_run_dense(op, "dh", dh)
    if (dw is None) != (db is None):
        raise ValueError(f"{op}: dw and db are computed together; pass both or neither")
    if dw is not None:
        dw, db = as_runs(op, "dw", dw, 2), as_runs(op, "db", db, 1)
        check_runs(op, "dw", dw, R, (H, 1))
        check_runs(op, "db", db, R, (1,))
    check_devices(op, h=h, w=w, b=b, losses=losses, dh=dh, dw=dw, db=db)
    cfg = configs.lookup("d_head", h.device, M=M, N=1, K=H)
    _d_head_kernel[(R,)](
        h, w, b, losses, dh, dw if dw is not None else dh, db if db is not None else dh,
        M, H, split if two else M, float(t0), float(t1), w.stride(1),
        h.stride(0), w.stride(0), b.stride(0), losses.stride(0), dh.stride(0),
        dw.stride(0) if dw is not None else 0, db.stride(0) if db is not None else 0,
        TWO_PARTS=two, NEED_DW=dw is not None,
        BLOCK_H=triton.next_power_of_2(H), enable_fp_fusion=FP_FUSION, **cfg,
    )
