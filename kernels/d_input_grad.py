"""D's gradient with respect to its input for G's loss, in one launch: what the G step needs
from D.

Fused
  For D(x) = relu(x W1 + b1) w2 + b2 (w2: (H, 1)) and a constant target t: D1's output h (read,
  or finished here from D1's split-K slots: relu(their sum in slot order + b1)), the logit
  l = h w2 + b2, the mean sigmoid cross-entropy of l against t, d mean / d l (never stored),
  g = dl w2^T * [h > 0] (D1's pre-activation gradient, never stored) and dx = g W1^T. Unfused, the
  G step would launch a loss head (loss, dh) and D1's backward (dx): two dependent launches and a
  round trip of h and dh through memory become one launch. At batch 8192 D1's dx programs read h
  and dh 13 times over (once per 64-wide column tile of dx); here only h (or its slots).
  kernels.d_grad is the D step's counterpart (D's weight gradients); both run D's output layer
  and its gradient as kernels.shared's `d_head`.

Grid: (row chunks x column tiles of dx, runs). Each program holds a (H, BLOCK_K) tile of W1^T
in registers (at the seed's width; see Widths) and walks the row blocks of its chunk: every
program recomputes its rows' logits (a 128-wide dot per row, cheap next to the product), so no
program waits on another.

Losses: the rows are cut into SPLIT chunks (a config value; `input_grad_partials` says how
many); the programs of column tile 0 write their chunk's share of the mean (already divided by
M) into slot `chunk` of `losses` (P, [R,] 1), P >= that count. Slots past it are left alone: the
caller keeps them zero and adds the slots in order (fastgan's trainer: once per replay). No
atomics: deterministic, and each run of a sweep equals the run alone bitwise.

Widths: up to kernels.shared.WHOLE_H hidden units (the seed's 128) the W1^T tile and g are held
whole; wider (--hidden), each row block finds its logits over every H_TILE-wide column tile, then
adds g's tile times W1^T's tile per column tile into dx (W1^T's tiles read per row block).

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
    hidden_block,
    row_chunk_config,
)


@triton.jit
def _d_input_grad_kernel(
    h_ptr,  # (R, M, H) D1's output (ReLU applied), or slot 0 of its (PRE_PARTS, R, M, H) raw K-chunk sums
    b1_ptr,  # (R, H) D1's bias (only if PRE_PARTS)
    w1_ptr,  # (R, K, H) D1's weight, stored (in, out)
    w2_ptr,  # (R, H, 1) D2's weight
    b2_ptr,  # (R, 1) D2's bias
    loss_ptr,  # (P, R, 1) out: each row chunk's share of the mean loss, per run
    dx_ptr,  # (R, M, K) out: d mean loss / d x, contiguous within a run
    M, H, K,
    t,  # the constant target
    inv_m,  # 1 / M
    stride_hr, stride_pres, stride_b1r, stride_b1,  # h's (or pre's) run stride, pre's slot stride, b1's
    stride_w1r, stride_w1k, stride_w1h, stride_w2r, stride_w2, stride_b2r,  # weights' strides
    stride_lr, stride_lp, stride_dxr,  # losses' run and slot strides, dx's run stride
    PRE_PARTS: tl.constexpr,  # 0: h is given; n: h = relu(sum of n slots of pre + b1)
    PRECISION: tl.constexpr,  # tl.dot input_precision: "ieee", "tf32x3" or "tf32"
    H_TILED: tl.constexpr,  # H > WHOLE_H: the hidden columns in BLOCK_H-wide tiles (kernels.shared.hidden_block)
    BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # run: one GAN of a sweep; chunk: the slot of the losses; rows [m_lo, m_hi), dx columns rk
    run, chunk, tile_k, one_tile, m_lo, m_hi, cols, rk = d_program(M, K, H, False, BLOCK_M, BLOCK_K, BLOCK_H)  # one_tile: 0
    h_ptr += run * stride_hr
    w1_ptr += run * stride_w1r
    w2_ptr += run * stride_w2r
    b1_ptr += run * stride_b1r
    dx_ptr += run * stride_dxr
    kmask = rk < K
    w2, b1 = d_tile_weights(w2_ptr, b1_ptr, cols, H, stride_w2, stride_b1, PRE_PARTS)  # the first column tile's
    b2 = tl.load(b2_ptr + run * stride_b2r)
    if not H_TILED:  # every hidden column: W1^T's (BLOCK_H, BLOCK_K) tile held for every row block
        w1t = tl.load(w1_ptr + cols[:, None] * stride_w1h + rk[None, :] * stride_w1k,
                      mask=(cols < H)[:, None] & kmask[None, :], other=0.0)
    total = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for m0 in range(m_lo, m_hi, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        _, loss, dlogit, g, rmask = d_head(h_ptr, b1, w2, b2, rows, cols, M, H, stride_pres, t, inv_m, PRE_PARTS,
                                           b1_ptr, w2_ptr, stride_w2, stride_b1, H_TILED, BLOCK_H)
        total += tl.where(rmask, loss, 0.0)
        if H_TILED:  # dx = sum over the column tiles of g's tile times W1^T's
            dx = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
            for c0 in range(0, H, BLOCK_H):
                c = c0 + tl.arange(0, BLOCK_H)
                w2c, b1c = d_tile_weights(w2_ptr, b1_ptr, c, H, stride_w2, stride_b1, PRE_PARTS)
                hc = d_hidden(h_ptr, b1c, rows, c, M, H, stride_pres, PRE_PARTS)
                gc = (dlogit[:, None] * w2c[None, :]) * (hc > 0).to(tl.float32)
                w1c = tl.load(w1_ptr + c[:, None] * stride_w1h + rk[None, :] * stride_w1k,
                              mask=(c < H)[:, None] & kmask[None, :], other=0.0)
                dx = tl.dot(gc, w1c, dx, input_precision=PRECISION)
        else:
            dx = tl.dot(g, w1t, input_precision=PRECISION)
        tl.store(dx_ptr + rows[:, None] * K + rk[None, :], dx, mask=rmask[:, None] & kmask[None, :])
    if tile_k == 0:
        tl.store(loss_ptr + run * stride_lr + chunk * stride_lp, tl.sum(total, axis=0) * inv_m)


def input_grad_partials(device, M, H, K):
    """How many loss slots d_input_grad writes for M rows, D1 of width H on K inputs."""
    return row_chunk_config("d_input_grad", device, M, H, K)["SPLIT"]


def d_input_grad(h, w1, w2, b2, losses, dx, t=1.0, pre=None, precision="ieee"):
    """One launch: the mean sigmoid cross-entropy of D(x) against t, as row-chunk shares in the
    slots of `losses` (P, [R,] 1) with P >= input_grad_partials(...), and dx = its gradient with
    respect to D's input (M, K), written in full (see module doc).

    h: D1's output (M, H), or None with pre=(slots (P, [R,] M, H), b1 ([R,] H)): D1's split-K
    raw sums, finished here. w1 (K, H), w2 (H, 1), b2 (1,). R runs at once: every tensor with a
    leading run axis. Returns what Triton's launch returns (on a GPU the compiled kernel)."""
    op = "d_input_grad"
    check_precision(op, precision)
    w1, w2, b2 = as_runs(op, "w1", w1, 2), as_runs(op, "w2", w2, 2), as_runs(op, "b2", b2, 1)
    R, K, H = w1.shape
    losses, n_slots, stride_lp = slots(op, "losses", losses, 1)
    losses, dx = as_runs(op, "losses", losses, 1), as_runs(op, "dx", dx, 2)
    M = dx.shape[1]
    check_runs(op, "losses", losses, R, (1,))
    check_runs(op, "dx", dx, R, (M, K))
    check_run_dense(op, "dx", dx)
    check_runs(op, "w2", w2, R, (H, 1))
    check_runs(op, "b2", b2, R, (1,))
    given, pre_parts, stride_pres, b1 = d1_input(op, h, pre, R, M, H)
    check_devices(op, h=given, b1=b1, w1=w1, w2=w2, b2=b2, losses=losses, dx=dx)
    cfg = row_chunk_config("d_input_grad", w1.device, M, H, K)
    n_chunks = cfg.pop("SPLIT")
    check_slots(op, "losses", n_slots, n_chunks, "splits the rows in", "fastgan.kernels.d_input_grad.input_grad_partials")
    block_h, tiled = hidden_block(H)
    return _d_input_grad_kernel[(n_chunks * triton.cdiv(K, cfg["BLOCK_K"]), R)](
        given, b1 if b1 is not None else given, w1, w2, b2, losses, dx,
        M, H, K, float(t), 1.0 / M,
        given.stride(0), stride_pres, *(b1.stride() if b1 is not None else (0, 0)),
        *w1.stride(), w2.stride(0), w2.stride(1), b2.stride(0),
        losses.stride(0), stride_lp, dx.stride(0),
        PRE_PARTS=pre_parts, PRECISION=precision, H_TILED=tiled, BLOCK_H=block_h,
        enable_fp_fusion=FP_FUSION, **cfg,
    )
