"""The D step's loss and every gradient of D, in one launch: D's output layer, both BCE means,
and the backward through D2 and D1 to D's weights.

Fused
  For D(x) = relu(x W1 + b1) w2 + b2 (w2: (H, 1)) on rows [0, split) scored against t0 and
  [split, M) against t1 (D's real and fake halves): D1's output h (read, or finished here from
  D1's split-K slots: relu(their sum in slot order + b1)), the logits l = h w2 + b2, the two
  means and their sum (the seed's d_real_loss, d_fake_loss, d_loss), dl = d(sum)/dl (never
  stored), D2's gradients dw2 = h^T dl and db2 = sum dl, D1's pre-activation gradient
  g = dl w2^T * [h > 0] (never stored), and D1's dW1 = x^T g and db1 = sum g. Unfused, the D
  step would launch a loss head (losses, dh, dw2, db2, h written) and D1's weight backward: two
  dependent launches and a round trip of h and dh through memory become one launch.

Grid: (row chunks x row tiles of dW1, runs). A program owns a (BLOCK_K, H) tile of dW1, every
hidden column, so each row's logit (a dot over all H columns of h) is in the program that
needs it: every program recomputes its rows' logits (cheap next to the product), and none
waits on another. x's first G rows may be gathered, images[idx] (D's real batch, read in place,
as in kernels.linear_act).

Partial sums (no atomics: deterministic; each run of a sweep equals the run alone bitwise):
the rows are cut into SPLIT chunks (config; `grad_partials` says how many), and chunk s writes
slot s of dw1, db1, dw2, db2 (its partial sums) and of the losses (its share of each mean,
already divided by the part's row count). Slots past SPLIT are left alone: the caller keeps them
zero and adds the slots in order (fastgan's trainer: Adam for the gradients, one sum per replay
for the logged losses). The programs of dW1's row tile 0 write the chunk's db1, dw2, db2, losses.

D1's output (`_d1_output`, checked by `d1_input`) and the row chunks (`_row_chunk`,
`row_chunk_config`) are shared with kernels.d_input_grad, the G step's pass through D.

Limits: H <= 256 (one block of hidden columns). float32. `precision` as in kernels.linear_act.
Not yet timed on a GPU: see benchmarks/NOTES.md.
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
from .linear_act import _check_precision, _gathered, _row_pointers
from .sigmoid_bce import _bce_and_grad

MAX_H = 256
FP_FUSION = True  # FMA contraction, set explicitly (Triton 3.10 changes its default)


@triton.jit
def _d1_output(h_ptr, b1, offs, mask, stride_pres, PRE_PARTS: tl.constexpr):
    """D1's output h at offsets `offs` (0 outside `mask`): h_ptr is h itself (PRE_PARTS = 0), or
    slot 0 of D1's split-K forward, finished here: relu(the slots summed in slot order + b1)."""
    h = tl.load(h_ptr + offs, mask=mask, other=0.0)
    if PRE_PARTS > 0:
        for s in tl.static_range(1, PRE_PARTS):
            h += tl.load(h_ptr + s * stride_pres + offs, mask=mask, other=0.0)
        h = tl.where(mask, tl.maximum(h + b1[None, :], 0.0), 0.0)
    return h


@triton.jit
def _row_chunk(M, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, K):
    """This program's (chunk, column tile, first row, end row): program ids enumerate (row chunk,
    BLOCK_K-wide tile of K) pairs, the chunks a whole number of BLOCK_M-row blocks each."""
    n_tiles_k = tl.cdiv(K, BLOCK_K)
    chunk = tl.program_id(0) // n_tiles_k
    rows_per_chunk = tl.cdiv(tl.cdiv(M, BLOCK_M), tl.num_programs(0) // n_tiles_k) * BLOCK_M
    m_lo = chunk * rows_per_chunk
    return chunk, tl.program_id(0) % n_tiles_k, m_lo, tl.minimum(m_lo + rows_per_chunk, M)


@triton.jit
def _d_grad_kernel(
    x_ptr,  # (R, M - G, K) D's input rows after the gathered ones
    img_ptr,  # (n, K) images the first G rows are gathered from (only if GATHER)
    idx_ptr,  # (R, G) int64 row numbers into images (only if GATHER)
    h_ptr,  # (R, M, H) D1's output (ReLU applied), or slot 0 of its (PRE_PARTS, R, M, H) raw K-chunk sums
    b1_ptr,  # (R, H) D1's bias (only if PRE_PARTS)
    w2_ptr,  # (R, H, 1) D2's weight
    b2_ptr,  # (R, 1) D2's bias
    loss_ptr,  # (P, R, 3) out: each chunk's shares of [d_loss, d_real_loss, d_fake_loss]
    dw1_ptr,  # (P, R, K, H) out: partial sums of dW1, contiguous within a run
    db1_ptr,  # (P, R, H) out: partial sums of db1
    dw2_ptr,  # (P, R, H, 1) out: partial sums of dw2
    db2_ptr,  # (P, R, 1) out: partial sums of db2
    M, H, K, G,
    split,  # rows [0, split) are part 0 (target t0), [split, M) part 1 (target t1)
    t0, t1,
    stride_xr, stride_xm, stride_im, stride_idxr,  # x's run and row strides, images' row, idx's run
    stride_hr, stride_pres, stride_b1r, stride_b1,  # h's (or pre's) run stride, pre's slot stride, b1's
    stride_w2r, stride_w2, stride_b2r,  # D2's strides
    stride_lr, stride_lp, stride_dw1r, stride_dw1p, stride_db1r, stride_db1p,  # outputs' run and slot strides
    stride_dw2r, stride_dw2p, stride_dw2, stride_db2r, stride_db2p,
    PRE_PARTS: tl.constexpr,  # 0: h is given; n: h = relu(sum of n slots of pre + b1)
    GATHER: tl.constexpr,  # the first G rows come from images[idx]
    PRECISION: tl.constexpr,  # tl.dot input_precision: "ieee", "tf32x3" or "tf32"
    BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    chunk, tile_k, m_lo, m_hi = _row_chunk(M, BLOCK_M, BLOCK_K, K)  # chunk: the slot of every output
    run = tl.program_id(1)  # one GAN of a sweep
    x_ptr += run * stride_xr
    idx_ptr += run * stride_idxr
    h_ptr += run * stride_hr
    b1_ptr += run * stride_b1r
    w2_ptr += run * stride_w2r
    b2_ptr += run * stride_b2r
    loss_ptr += run * stride_lr + chunk * stride_lp
    dw1_ptr += run * stride_dw1r + chunk * stride_dw1p
    db1_ptr += run * stride_db1r + chunk * stride_db1p
    dw2_ptr += run * stride_dw2r + chunk * stride_dw2p
    db2_ptr += run * stride_db2r + chunk * stride_db2p
    cols = tl.arange(0, BLOCK_H)
    cmask = cols < H
    rk = tile_k * BLOCK_K + tl.arange(0, BLOCK_K)
    w2 = tl.load(w2_ptr + cols * stride_w2, mask=cmask, other=0.0)
    b1 = tl.load(b1_ptr + cols * stride_b1, mask=cmask & (PRE_PARTS > 0), other=0.0)
    b2 = tl.load(b2_ptr)
    inv0 = 1.0 / split
    inv1 = 1.0 / (M - split)
    dw1 = tl.zeros((BLOCK_K, BLOCK_H), dtype=tl.float32)
    db1 = tl.zeros((BLOCK_H,), dtype=tl.float32)
    dw2 = tl.zeros((BLOCK_H,), dtype=tl.float32)
    db2 = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc0 = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc1 = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for m0 in range(m_lo, m_hi, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        rmask = rows < M
        mask = rmask[:, None] & cmask[None, :]
        h = _d1_output(h_ptr, b1, rows[:, None] * H + cols[None, :], mask, stride_pres, PRE_PARTS)
        logit = tl.sum(h * w2[None, :], axis=1) + b2
        in0 = rows < split
        loss, diff = _bce_and_grad(logit, tl.where(in0, t0, t1))
        dlogit = tl.where(rmask, diff * tl.where(in0, inv0, inv1), 0.0)
        g = (dlogit[:, None] * w2[None, :]) * (h > 0).to(tl.float32)  # dh, then D1's ReLU'
        src = _row_pointers(x_ptr, img_ptr, idx_ptr, rows, M, G, stride_xm, stride_im, GATHER)
        xt = tl.load(src[None, :] + rk[:, None], mask=(rk[:, None] < K) & rmask[None, :], other=0.0)
        dw1 = tl.dot(xt, g, dw1, input_precision=PRECISION)
        db1 += tl.sum(g, axis=0)
        dw2 += tl.sum(h * dlogit[:, None], axis=0)
        db2 += dlogit
        acc0 += tl.where(rmask & in0, loss, 0.0)
        acc1 += tl.where(rmask & (rows >= split), loss, 0.0)
    tl.store(dw1_ptr + rk[:, None] * H + cols[None, :], dw1, mask=(rk[:, None] < K) & cmask[None, :])
    if tile_k == 0:
        mean0 = tl.sum(acc0, axis=0) * inv0
        mean1 = tl.sum(acc1, axis=0) * inv1
        tl.store(loss_ptr, mean0 + mean1)
        tl.store(loss_ptr + 1, mean0)
        tl.store(loss_ptr + 2, mean1)
        tl.store(db1_ptr + cols, db1, mask=cmask)
        tl.store(dw2_ptr + cols * stride_dw2, dw2, mask=cmask)
        tl.store(db2_ptr, tl.sum(db2, axis=0))


def d1_input(op, h, pre, R, M, H):
    """D1's output for a _d1_output kernel, checked: h (M, H) as given, or h=None and
    pre=(slots (P, [R,] M, H), b1 ([R,] H)), D1's split-K raw sums and bias. Returns (the tensor
    the kernel reads, (R, M, H): h or slot 0; P (0 for h); the slot stride; b1 as (R, H) or None)."""
    if (h is None) == (pre is None):
        raise ValueError(f"{op}: pass D1's output h, or h=None and pre=(slots, b1) to finish it here")
    if pre is None:
        h = as_runs(op, "h", h, 2)
        check_runs(op, "h", h, R, (M, H))
        check_run_dense(op, "h", h)
        return h, 0, 0, None
    first, parts, stride = slots(op, "pre", pre[0], 2)
    first = as_runs(op, "pre", first, 2)
    if tuple(first.shape) != (R, M, H) or first.stride()[1:] != (H, 1):
        raise ValueError(f"{op}: pre's slots must be (P, {R}, {M}, {H}), contiguous within each run; got a slot "
                         f"of shape {tuple(first.shape)}, strides {first.stride()}")
    b1 = as_runs(op, "b1", pre[1], 1)
    check_runs(op, "b1", b1, R, (H,))
    return first, parts, stride, b1


def row_chunk_config(kernel, device, M, H, K):
    """The config of a row-chunked D kernel (d_grad, d_input_grad) for M rows, D1 of width H on K
    inputs (the lookup key: M, N = H, K): BLOCK_M clamped to M, BLOCK_K (its tiles of D's K
    inputs) to K, and SPLIT to M's row blocks."""
    cfg = configs.lookup(kernel, device, M=M, N=H, K=K)
    cfg["BLOCK_M"] = configs.block(cfg["BLOCK_M"], M)
    cfg["BLOCK_K"] = configs.block(cfg["BLOCK_K"], K)
    cfg["SPLIT"] = max(1, min(cfg["SPLIT"], triton.cdiv(M, cfg["BLOCK_M"])))
    return cfg


def grad_partials(device, M, H, K):
    """How many slots d_grad writes (losses and every gradient) for M rows, D1 of width H on K inputs."""
    return row_chunk_config("d_grad", device, M, H, K)["SPLIT"]


def d_grad(x, w2, b2, losses, dw1, db1, dw2, db2, split, t0=1.0, t1=0.0, h=None, pre=None, rows=None,
           precision="ieee"):
    """One launch: the D step's losses and D's gradients (see module doc), as row-chunk slots.

    x: D's input rows (M - G, K) after the G gathered ones of rows=(images, idx) (as in
    kernels.linear_act); h: D1's output (M, H), or h=None and pre=(slots (P, [R,] M, H),
    b1 ([R,] H)) to finish it here; w2 (H, 1), b2 (1,). Rows [0, split) are scored against t0,
    the rest against t1. Outputs with P >= grad_partials(...) slots: losses (P, 3), dw1 (P, K, H),
    db1 (P, H), dw2 (P, H, 1), db2 (P, 1). R runs at once: every tensor (but images) with a run
    axis after the slot axis. Returns what Triton's launch returns (on a GPU the compiled kernel)."""
    op = "d_grad"
    _check_precision(op, precision)
    x, w2, b2 = as_runs(op, "x", x, 2), as_runs(op, "w2", w2, 2), as_runs(op, "b2", b2, 1)
    R, Mx, K = x.shape
    H = w2.shape[1]
    if H > MAX_H:
        raise ValueError(f"{op}: hidden width {H} exceeds {MAX_H}; a program holds every hidden column")
    if x.stride(2) != 1:
        raise ValueError(f"{op}: x's rows must be contiguous (strides {x.stride()})")
    images, idx, G = _gathered(op, rows, R, K)
    M = G + Mx
    check_runs(op, "w2", w2, R, (H, 1))
    check_runs(op, "b2", b2, R, (1,))
    if not 0 < split < M:
        raise ValueError(f"{op}: split must be in 1..{M - 1} (both parts non-empty), got {split}")
    given, pre_parts, stride_pres, b1 = d1_input(op, h, pre, R, M, H)
    outs, n_slots, slot_strides = {}, {}, {}
    for name, t, shape in (("losses", losses, (3,)), ("dw1", dw1, (K, H)), ("db1", db1, (H,)), ("dw2", dw2, (H, 1)),
                           ("db2", db2, (1,))):
        t, n_slots[name], slot_strides[name] = slots(op, name, t, len(shape))
        t = outs[name] = as_runs(op, name, t, len(shape))
        check_runs(op, name, t, R, shape)
        check_run_dense(op, name, t)
    check_devices(op, x=x, images=images, idx=idx, h=given, b1=b1, w2=w2, b2=b2, **outs)
    cfg = row_chunk_config("d_grad", x.device, M, H, K)
    n_chunks = cfg.pop("SPLIT")
    for name, n in n_slots.items():
        check_slots(op, name, n, n_chunks, "splits the rows in", "kernels.d_grad.grad_partials")
    losses, dw1, db1, dw2, db2 = outs.values()
    return _d_grad_kernel[(n_chunks * triton.cdiv(K, cfg["BLOCK_K"]), R)](
        x, images if rows is not None else x, idx if rows is not None else x, given, b1 if b1 is not None else given, w2, b2, losses, dw1, db1, dw2, db2,
        M, H, K, G, split, float(t0), float(t1),
        x.stride(0), x.stride(1), images.stride(0) if rows is not None else 0, idx.stride(0) if rows is not None else 0,
        given.stride(0), stride_pres, *(b1.stride() if b1 is not None else (0, 0)),
        w2.stride(0), w2.stride(1), b2.stride(0),
        losses.stride(0), slot_strides["losses"], dw1.stride(0), slot_strides["dw1"], db1.stride(0),
        slot_strides["db1"], dw2.stride(0), slot_strides["dw2"], dw2.stride(1), db2.stride(0), slot_strides["db2"],
        PRE_PARTS=pre_parts, GATHER=rows is not None, PRECISION=precision, BLOCK_H=max(16, triton.next_power_of_2(H)),
        enable_fp_fusion=FP_FUSION, **cfg,
    )
