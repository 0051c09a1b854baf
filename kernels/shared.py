"""What several kernel files share: the products' precisions and FMA setting, the split sums'
chunk arithmetic, gathered input rows, the sigmoid cross-entropy, and D's output layer (the
head that both D kernels run: kernels.d_grad in the D step, kernels.d_input_grad in the G step).
Device math is `@triton.jit`, inlined where it is called; checks are plain Python."""

import torch
import triton
import triton.language as tl

from . import configs
from ._checks import as_runs, check_run_dense, check_runs, check_tensor, slots

PRECISIONS = ("ieee", "tf32x3", "tf32")  # tl.dot's input_precision: fp32, three TF32 products, one
# FMA contraction, set explicitly (Triton 3.10 changes its default); the products are fused
# multiply-adds either way. kernels.adam sets its own (off, to round like torch's Adam).
FP_FUSION = True
# D's hidden width: up to WHOLE_H (the seed's 128, which the configs were chosen for) the D
# kernels hold every hidden column of a row in one program; wider, they take the columns in tiles
# of H_TILE (d_grad: a grid axis of column tiles, each program finding its rows' logits over every
# tile; d_input_grad: a loop over the tiles). Tiles of 128 spilled 72 B in d_grad with R1 at batch
# 8192 in tf32 on sm_90 (Triton 3.9); tiles of 64 spill nowhere at H = 256 to 1,024.
WHOLE_H = 128
H_TILE = 64


def hidden_block(H):
    """(BLOCK_H, H_TILED) of a D kernel at hidden width H: one block of every column up to
    WHOLE_H (the seed's H = 128 computes as it always has), else tiles of H_TILE."""
    return (max(16, triton.next_power_of_2(H)), False) if H <= WHOLE_H else (H_TILE, True)


def check_precision(op, precision):
    if precision not in PRECISIONS:
        raise ValueError(f"{op}: precision must be one of {PRECISIONS}, got {precision!r}")


@triton.jit
def chunk_bounds(chunk, n, n_chunks, BLOCK: tl.constexpr):
    """[lo, hi) of chunk `chunk` when n is cut into n_chunks chunks of whole BLOCK-sized blocks:
    how every split sum (split-K, split-M, split-N, row chunks) divides its range."""
    per_chunk = tl.cdiv(tl.cdiv(n, BLOCK), n_chunks) * BLOCK
    lo = chunk * per_chunk
    return lo, tl.minimum(lo + per_chunk, n)


@triton.jit
def row_pointers(x_ptr, img_ptr, idx_ptr, rm, M, G, stride_xm, stride_im, GATHER: tl.constexpr):
    """Pointers to rows rm of the input: images[idx[m]] for m < G when GATHER, else x's row m - G."""
    if GATHER:
        gathered = rm < G
        src = tl.load(idx_ptr + rm, mask=gathered & (rm < M), other=0)
        return tl.where(gathered, img_ptr + src * stride_im, x_ptr + (rm - G) * stride_xm)
    else:
        return x_ptr + rm * stride_xm


def gathered(op, rows, R, K):
    """(images, idx as (R, G), G) from rows=(images, idx), checked; (None, None, 0) without rows."""
    if rows is None:
        return None, None, 0
    images, idx = rows
    check_tensor(op, "images", images, 2)
    if images.shape[1] != K or images.stride(1) != 1:
        raise ValueError(f"{op}: images must be (n, {K}) with contiguous rows, got shape {tuple(images.shape)} "
                         f"strides {images.stride()}")
    idx = as_runs(op, "idx", idx, 1, torch.int64)
    if idx.shape[0] != R or idx.stride(1) != 1:
        raise ValueError(f"{op}: idx must be (G,) or ({R}, G) row numbers, contiguous per run, got shape "
                         f"{tuple(idx.shape)}")
    return images, idx, idx.shape[1]


@triton.jit
def _log1p_small(e):
    """log(1 + e) for 0 <= e <= 1 to a few ulp (Goldberg's trick: the rounding of u = 1 + e
    cancels in log(u) * e / (u - 1)); plain log(1 + e) loses up to 6e-8 / e relative."""
    u = 1.0 + e
    d = u - 1.0
    return tl.where(d == 0.0, e, tl.log(u) * (e / tl.where(d == 0.0, 1.0, d)))


@triton.jit
def bce_and_grad(logit, target):
    """Sigmoid cross-entropy of logits against targets, elementwise, and its gradient
    sigmoid(l) - t: the device math every loss kernel shares (sigmoid_bce, d_grad, d_input_grad).
    The loss is max(l, 0) - l t + log(1 + e^-|l|); the gradient avoids cancelling near 1: with
    s = e / (1 + e), the smaller of sigmoid(l) and 1 - sigmoid(l), it is (1 - t) - s for l >= 0
    and s - t for l < 0."""
    e = tl.exp(-tl.abs(logit))
    loss = tl.maximum(logit, 0.0) - logit * target + _log1p_small(e)
    s = e / (1.0 + e)
    return loss, tl.where(logit >= 0, (1.0 - target) - s, s - target)


@triton.jit
def d_program(M, K, H, H_TILES: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_H: tl.constexpr):
    """Where a program of a row-chunked D kernel (d_grad, d_input_grad) works: program ids
    enumerate (row chunk, BLOCK_K-wide tile of K, BLOCK_H-wide tile of the hidden columns) triples
    (H_TILES: whether the hidden columns are a grid axis of tiles, d_grad at a tiled width; else
    one tile, folded away at compile time), the chunks a whole number of BLOCK_M-row blocks, over a
    grid axis of runs. Returns (run, chunk, K tile, column tile, first row, end row, the tile's
    hidden columns, the tile's K indices)."""
    n_tiles_h = tl.cdiv(H, BLOCK_H) if H_TILES else 1
    n_tiles_k = tl.cdiv(K, BLOCK_K)
    tile_h = tl.program_id(0) % n_tiles_h
    rest = tl.program_id(0) // n_tiles_h
    chunk = rest // n_tiles_k
    tile_k = rest % n_tiles_k
    m_lo, m_hi = chunk_bounds(chunk, M, tl.num_programs(0) // (n_tiles_k * n_tiles_h), BLOCK_M)
    cols = tile_h * BLOCK_H + tl.arange(0, BLOCK_H)
    rk = tile_k * BLOCK_K + tl.arange(0, BLOCK_K)
    return tl.program_id(1), chunk, tile_k, tile_h, m_lo, m_hi, cols, rk




@triton.jit
def d_hidden(h_ptr, b1, rows, cols, M, H, stride_pres, PRE_PARTS: tl.constexpr):
    """D1's output h on a block of rows and hidden columns (0 past M and H): read (PRE_PARTS = 0:
    h_ptr is h) or finished from its split-K slots (h_ptr is slot 0: relu(the slots summed in
    slot order + b1), b1 over `cols`)."""
    mask = (rows < M)[:, None] & (cols < H)[None, :]
    offs = rows[:, None] * H + cols[None, :]
    h = tl.load(h_ptr + offs, mask=mask, other=0.0)
    if PRE_PARTS > 0:
        for s in tl.static_range(1, PRE_PARTS):
            h += tl.load(h_ptr + s * stride_pres + offs, mask=mask, other=0.0)
        h = tl.where(mask, tl.maximum(h + b1[None, :], 0.0), 0.0)
    return h


@triton.jit
def d_tile_weights(w2_ptr, b1_ptr, cols, H, stride_w2, stride_b1, PRE_PARTS: tl.constexpr):
    """w2 and (where d_hidden finishes D1 from its slots) b1 over the hidden columns `cols`
    (zeros past H), from one run's pointers."""
    cmask = cols < H
    w2 = tl.load(w2_ptr + cols * stride_w2, mask=cmask, other=0.0)
    b1 = tl.load(b1_ptr + cols * stride_b1, mask=cmask & (PRE_PARTS > 0), other=0.0)
    return w2, b1


@triton.jit
def d_logits(h_ptr, b1_ptr, w2_ptr, rows, M, H, stride_pres, stride_w2, stride_b1, PRE_PARTS: tl.constexpr,
             BLOCK_H: tl.constexpr):
    """h w2 on a block of rows (without b2) at a tiled width: the sum over every BLOCK_H-wide
    tile of hidden columns, tile by tile (pointers: one run's)."""
    logit = tl.zeros_like(rows).to(tl.float32)
    for c0 in range(0, H, BLOCK_H):
        cols = c0 + tl.arange(0, BLOCK_H)
        w2, b1 = d_tile_weights(w2_ptr, b1_ptr, cols, H, stride_w2, stride_b1, PRE_PARTS)
        logit += tl.sum(d_hidden(h_ptr, b1, rows, cols, M, H, stride_pres, PRE_PARTS) * w2[None, :], axis=1)
    return logit


@triton.jit
def d_head(h_ptr, b1, w2, b2, rows, cols, M, H, stride_pres, target, scale, PRE_PARTS: tl.constexpr,
           b1_ptr, w2_ptr, stride_w2, stride_b1, H_TILED: tl.constexpr, BLOCK_H: tl.constexpr):
    """D's output layer on a block of rows (masked past M) and its gradient, for D(x) =
    relu(x W1 + b1) w2 + b2: D1's output h on the hidden columns `cols` (d_hidden); the logits
    l = h w2 + b2 (H_TILED: over every column tile, d_logits; else over `cols`, which hold them
    all); the sigmoid cross-entropy against `target`; dl = its gradient times `scale` (0 past M);
    and D1's pre-activation gradient on `cols`, g = dl w2^T * [h > 0]. b1 and w2 are over `cols`;
    b1_ptr, w2_ptr and their strides (one run's) serve the tiled logits.
    Returns (h, loss, dl, g, the rows' mask)."""
    rmask = rows < M
    h = d_hidden(h_ptr, b1, rows, cols, M, H, stride_pres, PRE_PARTS)
    if H_TILED:
        logit = d_logits(h_ptr, b1_ptr, w2_ptr, rows, M, H, stride_pres, stride_w2, stride_b1, PRE_PARTS, BLOCK_H) + b2
    else:
        logit = tl.sum(h * w2[None, :], axis=1) + b2
    loss, diff = bce_and_grad(logit, target)
    dlogit = tl.where(rmask, diff * scale, 0.0)
    g = (dlogit[:, None] * w2[None, :]) * (h > 0).to(tl.float32)  # dh, then D1's ReLU'
    return h, loss, dlogit, g, rmask


def d1_input(op, h, pre, R, M, H):
    """D1's output for d_head, checked: h (M, H) as given, or h=None and pre=(slots (P, [R,] M, H),
    b1 ([R,] H)), D1's split-K raw sums and bias. Returns (the tensor the kernel reads, (R, M, H):
    h or slot 0; P (0 for h); the slot stride; b1 as (R, H) or None)."""
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


def row_chunk_config(kernel, device, M, H, K, mode=None):
    """The config of a row-chunked D kernel (d_grad, d_input_grad) for M rows, D1 of width H on K
    inputs (the lookup key: M, N = H, K, and `mode`: "r1" for d_grad with the R1 penalty):
    BLOCK_M clamped to M, BLOCK_K (its tiles of D's K inputs) to K, and SPLIT to M's row blocks."""
    cfg = configs.lookup(kernel, device, M=M, N=H, K=K, mode=mode)
    cfg["BLOCK_M"] = configs.block(cfg["BLOCK_M"], M)
    cfg["BLOCK_K"] = configs.block(cfg["BLOCK_K"], K)
    cfg["SPLIT"] = max(1, min(cfg["SPLIT"], triton.cdiv(M, cfg["BLOCK_M"])))
    return cfg
