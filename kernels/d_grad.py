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

Grid: (row chunks x row tiles of dW1 x column tiles, runs). Up to kernels.shared.WHOLE_H hidden
units (the seed's 128) there is one column tile: a program owns a (BLOCK_K, H) tile of dW1, every
hidden column, so each row's logit (a dot over all H columns of h) is in the program that needs
it: every program recomputes its rows' logits (cheap next to the product), and none waits on
another. Wider (--hidden), a program owns a (BLOCK_K, H_TILE) tile and finds its rows' logits
over every column tile (each program reads its rows of h whole: H / H_TILE times the reads of
one tile's programs); db1 and dw2 are written per column tile, the losses and db2 by tile 0.
x's first G rows may be gathered, images[idx] (D's real batch, read in place, as in
kernels.linear_act).

Partial sums (no atomics: deterministic; each run of a sweep equals the run alone bitwise):
the rows are cut into SPLIT chunks (config; `grad_partials` says how many), and chunk s writes
slot s of dw1, db1, dw2, db2 (its partial sums) and of the losses (its share of each mean,
already divided by the part's row count). Slots past SPLIT are left alone: the caller keeps them
zero and adds the slots in order (fastgan's trainer: Adam for the gradients, one sum per replay
for the logged losses). The programs of dW1's row tile 0 write the chunk's db1, dw2, db2, losses.

R1 penalty (R1 flag; Mescheder et al. 2018): D's loss gains (gamma / 2B) sum over the B real
rows [0, split) of |grad_x D(x)|^2, gamma per run. For this D it has a closed form: with
u = w2 * [h > 0] per row and g = u W1^T = grad_x D(x) (K wide), dW1 += (gamma / B) g^T u and
dw2 += (gamma / B) sum over rows of [h > 0] * (g W1); b1 and b2 get nothing ([h > 0] is piecewise
constant). A program's K tile of g needs only its own rows of W1 (g_t = u W1_t^T), so the dW1
term is one more product per row block in every program; the dw2 term sums over all K, so the
programs of K tile 0 (which write dw2) loop over every tile of W1 for their real rows: +2 row x
H x K products there. On the real half only: +3 products the size of D1's on B rows (+77 MFLOP
at batch 128, of which 51 in the tile-0 programs). The penalty's value is not computed (nothing
needs it) and the logged d_loss stays the BCE terms.

D's output layer and its gradient (`d_head`), the row chunks (`d_program`, `row_chunk_config`)
and D1's input checks (`d1_input`) are kernels.shared's, as kernels.d_input_grad uses them too.

At a tiled width R1's g = u W1^T sums over every column tile too (`_grad_x`): per real row block
one (BLOCK_M, BLOCK_K) product per column tile in every program, and in the K-tile-0 programs
that per K tile as well (dw2's term), so R1's extra work grows as H^2 there: at H = 1,024 and
batch 128 that is 16 x 2 x 64 x 784 x 1024 x 16 = 26 GFLOP over the tile-0 programs (against
0.4 GFLOP of D's own products): fine for trying wide models, to be restructured before wide
R1 runs are fast.

Limits: float32. `precision` as in kernels.linear_act. Compiled for sm_90 without spills at
H = 64 to 1,024 (tests/test_kernels_compile.py). Not yet timed on a GPU: see benchmarks/NOTES.md.
"""

import triton
import triton.language as tl

from ._checks import as_runs, check_devices, check_run_dense, check_runs, check_slots, slots
from .shared import (
    FP_FUSION,
    check_precision,
    d1_input,
    d_head,
    d_hidden,
    d_program,
    d_tile_weights,
    gathered,
    hidden_block,
    row_chunk_config,
    row_pointers,
)


@triton.jit
def _grad_x(h_ptr, b1_ptr, w2_ptr, w1_ptr, rows, real, rk, M, H, K, stride_pres, stride_w2, stride_b1,
            PRE_PARTS: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
            BLOCK_H: tl.constexpr):
    """grad_x D = u W1^T on the rows `real` (0 on the others) and the K columns rk at a tiled
    width, u = w2 [h > 0]: the sum over every column tile of u's tile times W1's (pointers: one run's)."""
    gx = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
    for c0 in range(0, H, BLOCK_H):
        c = c0 + tl.arange(0, BLOCK_H)
        w2c, b1c = d_tile_weights(w2_ptr, b1_ptr, c, H, stride_w2, stride_b1, PRE_PARTS)
        hc = d_hidden(h_ptr, b1c, rows, c, M, H, stride_pres, PRE_PARTS)
        uc = tl.where(real[:, None] & (hc > 0), w2c[None, :], 0.0)
        w1c = tl.load(w1_ptr + rk[:, None] * H + c[None, :], mask=(rk[:, None] < K) & (c < H)[None, :], other=0.0)
        gx = tl.dot(uc, tl.trans(w1c), gx, input_precision=PRECISION)
    return gx


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
    w1_ptr,  # (R, K_R1, H) D1's weight's first K_R1 rows, rows of H contiguous (only if R1)
    r1_ptr,  # (R,) each run's R1 gamma (only if R1; 0: that run's penalty is off)
    M, H, K, G,
    split,  # rows [0, split) are part 0 (target t0), [split, M) part 1 (target t1)
    t0, t1,
    stride_xr, stride_xm, stride_im, stride_idxr,  # x's run and row strides, images' row, idx's run
    stride_hr, stride_pres, stride_b1r, stride_b1,  # h's (or pre's) run stride, pre's slot stride, b1's
    stride_w2r, stride_w2, stride_b2r,  # D2's strides
    stride_lr, stride_lp, stride_dw1r, stride_dw1p, stride_db1r, stride_db1p,  # outputs' run and slot strides
    stride_dw2r, stride_dw2p, stride_dw2, stride_db2r, stride_db2p,
    stride_w1r,  # W1's run stride (rows of H contiguous)
    PRE_PARTS: tl.constexpr,  # 0: h is given; n: h = relu(sum of n slots of pre + b1)
    GATHER: tl.constexpr,  # the first G rows come from images[idx]
    R1: tl.constexpr,  # add the R1 penalty's gradients (gamma from r1_ptr)
    K_R1: tl.constexpr,  # R1 on input columns [0, K_R1): K, or a conditional D's pixels (0 without R1; a constexpr:
    # as a runtime argument it cost the plain variant 24 B of spills at X = 1,024 on Triton 3.9)
    PRECISION: tl.constexpr,  # tl.dot input_precision: "ieee", "tf32x3" or "tf32"
    H_TILED: tl.constexpr,  # H > WHOLE_H: a grid axis of BLOCK_H-wide column tiles (kernels.shared.hidden_block)
    BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # run: one GAN of a sweep; chunk: the slot of every output; rows [m_lo, m_hi), dW1 rows rk, columns cols
    run, chunk, tile_k, tile_h, m_lo, m_hi, cols, rk = d_program(M, K, H, H_TILED, BLOCK_M, BLOCK_K, BLOCK_H)
    h_ptr += run * stride_hr
    w2_ptr += run * stride_w2r
    b1_ptr += run * stride_b1r
    cmask = cols < H
    w2, b1 = d_tile_weights(w2_ptr, b1_ptr, cols, H, stride_w2, stride_b1, PRE_PARTS)
    b2 = tl.load(b2_ptr + run * stride_b2r)
    inv0 = 1.0 / split
    inv1 = 1.0 / (M - split)
    dw1 = tl.zeros((BLOCK_K, BLOCK_H), dtype=tl.float32)
    db1 = tl.zeros((BLOCK_H,), dtype=tl.float32)
    dw2 = tl.zeros((BLOCK_H,), dtype=tl.float32)
    db2 = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc0 = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc1 = tl.zeros((BLOCK_M,), dtype=tl.float32)
    if R1:
        w1_ptr += run * stride_w1r
        r1_scale = tl.load(r1_ptr + run) * inv0  # gamma / B
        if not H_TILED:
            w1t = tl.load(w1_ptr + rk[:, None] * H + cols[None, :], mask=(rk[:, None] < K_R1) & cmask[None, :], other=0.0)
    for m0 in range(m_lo, m_hi, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        in0 = rows < split
        h, loss, dlogit, g, rmask = d_head(h_ptr, b1, w2, b2, rows, cols, M, H, stride_pres,
                                           tl.where(in0, t0, t1), tl.where(in0, inv0, inv1), PRE_PARTS,
                                           b1_ptr, w2_ptr, stride_w2, stride_b1, H_TILED, BLOCK_H)
        src = row_pointers(x_ptr + run * stride_xr, img_ptr, idx_ptr + run * stride_idxr, rows, M, G, stride_xm,
                           stride_im, GATHER)
        xt = tl.load(src[None, :] + rk[:, None], mask=(rk[:, None] < K) & rmask[None, :], other=0.0)
        dw1 = tl.dot(xt, g, dw1, input_precision=PRECISION)
        if R1:
            if m0 < split:  # a block with real rows: u = w2 [h > 0] on them, 0 elsewhere
                on = (in0 & rmask)[:, None] & (h > 0)
                u = tl.where(on, w2[None, :], 0.0)
                if H_TILED:
                    g_t = _grad_x(h_ptr, b1_ptr, w2_ptr, w1_ptr, rows, in0 & rmask, rk, M, H, K_R1, stride_pres, stride_w2,
                                  stride_b1, PRE_PARTS, PRECISION, BLOCK_M, BLOCK_K, BLOCK_H)
                else:
                    g_t = tl.dot(u, tl.trans(w1t), input_precision=PRECISION)  # (BLOCK_M, BLOCK_K) of grad_x D
                dw1 = tl.dot(tl.trans(g_t), u * r1_scale, dw1, input_precision=PRECISION)
        db1 += tl.sum(g, axis=0)
        dw2 += tl.sum(h * dlogit[:, None], axis=0)
        db2 += dlogit
        acc0 += tl.where(rmask & in0, loss, 0.0)
        acc1 += tl.where(rmask & (rows >= split), loss, 0.0)
    dw1_ptr += run * stride_dw1r + chunk * stride_dw1p
    tl.store(dw1_ptr + rk[:, None] * H + cols[None, :], dw1, mask=(rk[:, None] < K) & cmask[None, :])
    if R1:
        if tile_k == 0:  # dw2's R1 term sums g W1 over every K tile: the chunk's real rows again, dW1 stored
            for m0 in range(m_lo, tl.minimum(m_hi, split), BLOCK_M):
                rows = m0 + tl.arange(0, BLOCK_M)
                h = d_hidden(h_ptr, b1, rows, cols, M, H, stride_pres, PRE_PARTS)
                real = (rows < M) & (rows < split)
                on = real[:, None] & (h > 0)
                u = tl.where(on, w2[None, :], 0.0)
                gw = tl.zeros((BLOCK_M, BLOCK_H), dtype=tl.float32)
                for k0 in range(0, K_R1, BLOCK_K):
                    rk2 = k0 + tl.arange(0, BLOCK_K)
                    w1k = tl.load(w1_ptr + rk2[:, None] * H + cols[None, :], mask=(rk2[:, None] < K_R1) & cmask[None, :],
                                  other=0.0)
                    if H_TILED:
                        g_k = _grad_x(h_ptr, b1_ptr, w2_ptr, w1_ptr, rows, real, rk2, M, H, K_R1, stride_pres, stride_w2,
                                      stride_b1, PRE_PARTS, PRECISION, BLOCK_M, BLOCK_K, BLOCK_H)
                    else:
                        g_k = tl.dot(u, tl.trans(w1k), input_precision=PRECISION)
                    gw = tl.dot(g_k, w1k, gw, input_precision=PRECISION)
                dw2 += tl.sum(tl.where(on, gw, 0.0), axis=0) * r1_scale
    if tile_k == 0:  # the chunk's sums over rows, once (per column tile for db1, dw2)
        if tile_h == 0:
            loss_ptr += run * stride_lr + chunk * stride_lp
            mean0 = tl.sum(acc0, axis=0) * inv0
            mean1 = tl.sum(acc1, axis=0) * inv1
            tl.store(loss_ptr, mean0 + mean1)
            tl.store(loss_ptr + 1, mean0)
            tl.store(loss_ptr + 2, mean1)
            tl.store(db2_ptr + run * stride_db2r + chunk * stride_db2p, tl.sum(db2, axis=0))
        tl.store(db1_ptr + run * stride_db1r + chunk * stride_db1p + cols, db1, mask=cmask)
        tl.store(dw2_ptr + run * stride_dw2r + chunk * stride_dw2p + cols * stride_dw2, dw2, mask=cmask)


def grad_partials(device, M, H, K):
    """How many slots d_grad writes (losses and every gradient) for M rows, D1 of width H on K inputs."""
    return row_chunk_config("d_grad", device, M, H, K)["SPLIT"]


def d_grad(x, w2, b2, losses, dw1, db1, dw2, db2, split, t0=1.0, t1=0.0, h=None, pre=None, rows=None,
           precision="ieee", r1=None, w1=None):
    """One launch: the D step's losses and D's gradients (see module doc), as row-chunk slots.

    x: D's input rows (M - G, K) after the G gathered ones of rows=(images, idx) (as in
    kernels.linear_act); h: D1's output (M, H), or h=None and pre=(slots (P, [R,] M, H),
    b1 ([R,] H)) to finish it here; w2 (H, 1), b2 (1,). Rows [0, split) are scored against t0,
    the rest against t1. Outputs with P >= grad_partials(...) slots: losses (P, 3), dw1 (P, K, H),
    db1 (P, H), dw2 (P, H, 1), db2 (P, 1). R runs at once: every tensor (but images) with a run
    axis after the slot axis. With r1 ((R,) gammas, float32) and D1's weight w1 (K, H): the R1
    penalty's gradients on rows [0, split) are added (module doc); w1 may be its first K' < K rows
    only, a penalty on the first K' input columns (a conditional D's pixels, not its labels). Returns what Triton's launch
    returns (on a GPU the compiled kernel)."""
    op = "d_grad"
    check_precision(op, precision)
    x, w2, b2 = as_runs(op, "x", x, 2), as_runs(op, "w2", w2, 2), as_runs(op, "b2", b2, 1)
    R, Mx, K = x.shape
    H = w2.shape[1]
    if x.stride(2) != 1:
        raise ValueError(f"{op}: x's rows must be contiguous (strides {x.stride()})")
    images, idx, G = gathered(op, rows, R, K)
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
    if (r1 is None) != (w1 is None):
        raise ValueError(f"{op}: the R1 penalty needs both r1 (gammas per run) and w1 (D1's weight); pass both or neither")
    if r1 is not None:
        w1 = as_runs(op, "w1", w1, 2)
        if not 1 <= w1.shape[1] <= K:
            raise ValueError(f"{op}: w1 must be D1's weight (K, H) = ({K}, {H}) or its first rows, got {tuple(w1.shape[1:])}")
        check_runs(op, "w1", w1, R, (w1.shape[1], H))
        if w1.stride()[1:] != (H, 1):
            raise ValueError(f"{op}: w1's rows must be contiguous, (K, H) with strides ({H}, 1); got {w1.stride()}")
        r1 = as_runs(op, "r1", r1, 0)
        if tuple(r1.shape) != (R,) or (R > 1 and r1.stride(0) != 1):
            raise ValueError(f"{op}: r1 must hold one gamma per run, contiguous: shape ({R},), got {tuple(r1.shape)}")
    check_devices(op, x=x, images=images, idx=idx, h=given, b1=b1, w2=w2, b2=b2, w1=w1, r1=r1, **outs)
    cfg = row_chunk_config("d_grad", x.device, M, H, K, "r1" if r1 is not None else None)
    n_chunks = cfg.pop("SPLIT")
    for name, n in n_slots.items():
        check_slots(op, name, n, n_chunks, "splits the rows in", "fastgan.kernels.d_grad.grad_partials")
    losses, dw1, db1, dw2, db2 = outs.values()
    block_h, tiled = hidden_block(H)
    n_tiles_h = triton.cdiv(H, block_h)
    return _d_grad_kernel[(n_chunks * triton.cdiv(K, cfg["BLOCK_K"]) * n_tiles_h, R)](
        x, images if rows is not None else x, idx if rows is not None else x, given, b1 if b1 is not None else given, w2, b2, losses, dw1, db1, dw2, db2,
        w1 if r1 is not None else x, r1 if r1 is not None else x,
        M, H, K, G, split, float(t0), float(t1),
        x.stride(0), x.stride(1), images.stride(0) if rows is not None else 0, idx.stride(0) if rows is not None else 0,
        given.stride(0), stride_pres, *(b1.stride() if b1 is not None else (0, 0)),
        w2.stride(0), w2.stride(1), b2.stride(0),
        losses.stride(0), slot_strides["losses"], dw1.stride(0), slot_strides["dw1"], db1.stride(0),
        slot_strides["db1"], dw2.stride(0), slot_strides["dw2"], dw2.stride(1), db2.stride(0), slot_strides["db2"],
        w1.stride(0) if r1 is not None else 0,
        PRE_PARTS=pre_parts, GATHER=rows is not None, R1=r1 is not None, K_R1=w1.shape[1] if r1 is not None else 0,
        PRECISION=precision, H_TILED=tiled, BLOCK_H=block_h,
        enable_fp_fusion=FP_FUSION, **cfg,
    )
