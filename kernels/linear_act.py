"""Fused linear + activation: y = act(x @ w + b), with act in {identity, ReLU, sigmoid}.

Fused
  forward : the matrix product, the bias add and the activation in one kernel; the
            pre-activation never reaches memory.
  backward: one launch computes the activation gradient g = dy * act'(y) on the fly (from the
            saved output y: ReLU' = [y > 0], sigmoid' = y (1 - y)) and uses it for all three
            gradients: dx = g @ w^T, dw = x^T @ g and db = sum over the batch of g. The grid is
            split: the first programs own dx tiles, the rest own dw tiles (and db on the first
            row of dw tiles). dx and dw are constexpr flags (NEED_DX, NEED_DW), so a layer
            whose input needs no gradient (G's first layer, D on real data) launches no dx tiles.

Layout: w is (in, out) like the seed; x is (M, in); any M >= 1 and any in/out (masked tiles).
Runs: every tensor may carry a leading run axis (R GANs of a sweep, each with its own inputs,
weights and outputs); the runs are a grid axis, so R runs are one launch, and each run's
numbers are bitwise those of the same run launched alone (same tiles, same order).
Inputs may be strided; outputs must be contiguous within a run. float32 only.

Gathered rows (forward): `rows=(images, idx)` makes the first G = len(idx) rows of the input
images[idx] (the batch's real images, read in place) and the rest x's rows: D's first layer
reads the gathered batch without a gather launch or a copy (kernels.d_grad, its backward, reads
them the same way, through kernels.shared's `row_pointers`).

Split-M weight gradient: with `partials=True`, dw and db carry a leading axis of P partial
sums; the batch is cut into SPLIT_M chunks (a config value, `dw_partials` tells how many) and
partial s is written in slot s, in full (zeros for an empty chunk). Slots past SPLIT_M are left
alone: the caller keeps them zero, and the consumer (fastgan's trainer: the Adam kernel) adds
the P slots in a fixed order. No atomics, so the sums are deterministic and every run of a
sweep still equals the run alone. Without `partials`, one program per dw tile walks the whole
batch (the autograd Function does this).

Split-N input gradient: with `partials=True` dx carries slots too: dx = g @ w^T is a sum over
the layer's N outputs (784 deep for G's second layer), cut into SPLIT_N chunks (config;
`dx_partials` says how many), chunk s written in full to slot s, slots past SPLIT_N left alone.
The consumer is the previous layer's backward: `dy_partials=True` makes its dy such slots,
added in slot order where g = dy * act'(y) is formed (fastgan's trainer: G1's backward finishes
G2's dx), so the split costs no launch and stays deterministic.

Split-K forward: with `partials=True`, y carries a leading axis of P slots and the K-deep sum is
cut into SPLIT_K chunks (config; `forward_partials` says how many); chunk s writes its raw sum
x[:, chunk] @ w[chunk] into slot s, without bias or activation: the consumer finishes
y = act(sum of the slots + b) (fastgan's trainer: kernels.d_grad and d_input_grad, for D1's
784-deep products). Slots past SPLIT_K are left alone (kept zero by the caller).

Precision: `precision` is tl.dot's input_precision: "ieee" (default; exact fp32 products, what
the tests compare at 2e-5), "tf32x3" (three TF32 products per product, close to fp32, on the
tensor cores) or "tf32" (one TF32 product: 10-bit mantissas, relative error about 1e-3).

Configs (block sizes, split, warps, pipeline stages) are data: kernels/configs/ (default.json
for every card, a tuned table per card from `python -m benchmarks.tune`), looked up by kernel
and shape. The backward's dx and dw tiles have block sizes of their own (DX_BLOCK_*, DW_BLOCK_*).
sm_90 compile (python -m benchmarks.kernel_report): the backward pipelined with 3 stages at
64x64x64 used 255 registers and spilled ~1.7 KB per thread; unpipelined (num_stages 1) 139-168
registers and no spill, since its tiles of g = dy * act'(y) are computed in registers. Small
tiles (16x64x32 dx, 32x64x32 dw) pipeline with 2-3 stages without spilling: the batch-128
defaults.
Not yet measured on a GPU: see benchmarks/NOTES.md.
"""

import torch
import triton
import triton.language as tl

from . import configs
from ._checks import as_runs, check_devices, check_run_dense, check_runs, check_slots, slots
from .shared import FP_FUSION, check_precision, chunk_bounds, gathered, row_pointers

ACT_NONE, ACT_RELU, ACT_SIGMOID = 0, 1, 2
_ACT_NAMES = {ACT_NONE: "linear", ACT_RELU: "linear_relu", ACT_SIGMOID: "linear_sigmoid"}


@triton.jit
def _act_grad(y, ACT: tl.constexpr):
    """d act / d pre-activation, written in terms of the activation's output y."""
    if ACT == 1:
        return (y > 0).to(tl.float32)
    elif ACT == 2:
        return y * (1.0 - y)
    else:
        return tl.full(y.shape, 1.0, tl.float32)


@triton.jit
def _pre_act_grad(y_ptr, dy_ptr, rm, rn, M, N, stride_ym, stride_yn, stride_dym, stride_dyn, stride_dys,
                  ACT: tl.constexpr, DY_PARTS: tl.constexpr):
    """The (rm, rn) tile of g = dy * act'(y), the gradient of the pre-activation (0 outside);
    dy is the sum of DY_PARTS slots, added in slot order."""
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    y = tl.load(y_ptr + rm[:, None] * stride_ym + rn[None, :] * stride_yn, mask=mask, other=0.0)
    dy_tile = dy_ptr + rm[:, None] * stride_dym + rn[None, :] * stride_dyn
    dy = tl.load(dy_tile, mask=mask, other=0.0)
    for s in tl.static_range(1, DY_PARTS):
        dy += tl.load(dy_tile + s * stride_dys, mask=mask, other=0.0)
    return dy * _act_grad(y, ACT)


@triton.jit
def _linear_act_fwd_kernel(
    x_ptr,  # (R, M - G, K) input (the rows after the gathered ones)
    img_ptr,  # (n, K) images the first G rows are gathered from (only if GATHER)
    idx_ptr,  # (R, G) int64 row numbers into images (only if GATHER)
    w_ptr,  # (R, K, N) weight, stored (in, out)
    b_ptr,  # (R, N) bias
    y_ptr,  # (R, M, N) output, contiguous within a run
    M, N, K, G,
    stride_xr, stride_xm, stride_xk,  # x strides in elements (stride_xk is 1 if GATHER)
    stride_im, stride_idxr,  # images' row stride, idx's run stride
    stride_wr, stride_wk, stride_wn,  # w strides in elements
    stride_br, stride_b,  # b strides in elements
    stride_yr,  # y's run stride (rows of N within a run)
    stride_ys,  # y's slot stride (SPLIT_K > 1)
    ACT: tl.constexpr,  # 0 identity, 1 ReLU, 2 sigmoid
    GATHER: tl.constexpr,  # the first G rows come from images[idx]
    PRECISION: tl.constexpr,  # tl.dot input_precision: "ieee", "tf32x3" or "tf32"
    SPLIT_K: tl.constexpr,  # K chunks, one slot of y each
    RAW: tl.constexpr,  # write raw sums (no bias, no activation): the caller finishes the slots
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0) // SPLIT_K
    chunk = tl.program_id(0) % SPLIT_K
    pid_n = tl.program_id(1)
    run = tl.program_id(2)  # one GAN of a sweep: its own inputs, weights and outputs
    x_ptr += run * stride_xr
    idx_ptr += run * stride_idxr
    w_ptr += run * stride_wr
    b_ptr += run * stride_br
    y_ptr += run * stride_yr + chunk * stride_ys
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    rows = row_pointers(x_ptr, img_ptr, idx_ptr, rm, M, G, stride_xm, stride_im, GATHER)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if SPLIT_K == 1:
        k_lo = 0
        k_hi = K
    else:  # this program's chunk of K (a whole number of blocks)
        k_lo, k_hi = chunk_bounds(chunk, K, SPLIT_K, BLOCK_K)
    for k0 in range(k_lo, k_hi, BLOCK_K):
        kk = k0 + rk
        a = tl.load(rows[:, None] + kk[None, :] * stride_xk, mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0)
        b = tl.load(w_ptr + kk[:, None] * stride_wk + rn[None, :] * stride_wn,
                    mask=(kk[:, None] < K) & (rn[None, :] < N), other=0.0)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    if not RAW:
        acc += tl.load(b_ptr + rn * stride_b, mask=rn < N, other=0.0)[None, :]
        if ACT == 1:
            acc = tl.maximum(acc, 0.0)
        elif ACT == 2:
            acc = 1.0 / (1.0 + tl.exp(-acc))
    tl.store(y_ptr + rm[:, None] * N + rn[None, :], acc, mask=(rm[:, None] < M) & (rn[None, :] < N))


@triton.jit
def _dx_tile(w_ptr, y_ptr, dy_ptr, dx_ptr, tile, n_lo, n_hi, M, N, K,
             stride_wk, stride_wn, stride_ym, stride_yn, stride_dym, stride_dyn, stride_dys,
             ACT: tl.constexpr, DY_PARTS: tl.constexpr, PRECISION: tl.constexpr,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """dx[m, k] = sum_n g[m, n] w[k, n] over columns [n_lo, n_hi) for one (BLOCK_M, BLOCK_K) tile."""
    n_tiles_k = tl.cdiv(K, BLOCK_K)
    rm = (tile // n_tiles_k) * BLOCK_M + tl.arange(0, BLOCK_M)
    rk = (tile % n_tiles_k) * BLOCK_K + tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
    for n0 in range(n_lo, n_hi, BLOCK_N):
        rn = n0 + tl.arange(0, BLOCK_N)
        g = _pre_act_grad(y_ptr, dy_ptr, rm, rn, M, N, stride_ym, stride_yn, stride_dym, stride_dyn, stride_dys,
                          ACT, DY_PARTS)
        wt = tl.load(w_ptr + rn[:, None] * stride_wn + rk[None, :] * stride_wk,
                     mask=(rn[:, None] < N) & (rk[None, :] < K), other=0.0)
        acc = tl.dot(g, wt, acc, input_precision=PRECISION)
    tl.store(dx_ptr + rm[:, None] * K + rk[None, :], acc, mask=(rm[:, None] < M) & (rk[None, :] < K))


@triton.jit
def _dw_tile(x_ptr, y_ptr, dy_ptr, dw_ptr, db_ptr, tile, m_lo, m_hi, M, N, K,
             stride_xm, stride_xk, stride_ym, stride_yn, stride_dym, stride_dyn, stride_dys,
             ACT: tl.constexpr, DY_PARTS: tl.constexpr, PRECISION: tl.constexpr,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """dw[k, n] = sum_m x[m, k] g[m, n] over rows [m_lo, m_hi) for one (BLOCK_K, BLOCK_N) tile of
    dw; db[n] = sum_m g[m, n] on the first row of tiles."""
    n_tiles_n = tl.cdiv(N, BLOCK_N)
    tile_k = tile // n_tiles_n
    rk = tile_k * BLOCK_K + tl.arange(0, BLOCK_K)
    rn = (tile % n_tiles_n) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
    dbias = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for m0 in range(m_lo, m_hi, BLOCK_M):
        rm = m0 + tl.arange(0, BLOCK_M)
        g = _pre_act_grad(y_ptr, dy_ptr, rm, rn, M, N, stride_ym, stride_yn, stride_dym, stride_dyn, stride_dys,
                          ACT, DY_PARTS)
        xt = tl.load(x_ptr + rm[None, :] * stride_xm + rk[:, None] * stride_xk,
                     mask=(rk[:, None] < K) & (rm[None, :] < M), other=0.0)
        acc = tl.dot(xt, g, acc, input_precision=PRECISION)
        dbias += tl.sum(g, axis=0)
    tl.store(dw_ptr + rk[:, None] * N + rn[None, :], acc, mask=(rk[:, None] < K) & (rn[None, :] < N))
    if tile_k == 0:
        tl.store(db_ptr + rn, dbias, mask=rn < N)


@triton.jit
def _linear_act_bwd_kernel(
    x_ptr,  # (R, M, K) forward input
    w_ptr,  # (R, K, N) weight
    y_ptr,  # (R, M, N) forward output (activation applied)
    dy_ptr,  # (DY_PARTS, R, M, N) gradient of the output, as slots summed here
    dx_ptr,  # (P, R, M, K) out: gradient of x as N-chunk partial sums, contiguous per run (only if NEED_DX)
    dw_ptr,  # (P, R, K, N) out: partial sums of the gradient of w (unused unless NEED_DW)
    db_ptr,  # (P, R, N) out: partial sums of the gradient of b (unused unless NEED_DW)
    M, N, K,
    stride_xr, stride_xm, stride_xk,  # x strides
    stride_wr, stride_wk, stride_wn,  # w strides
    stride_yr, stride_ym, stride_yn,  # y strides
    stride_dyr, stride_dym, stride_dyn,  # dy strides
    stride_dys,  # dy's slot stride (DY_PARTS > 1)
    stride_dxr, stride_dwr, stride_dbr,  # run strides of the outputs
    stride_dxp, stride_dwp, stride_dbp,  # partial-slot strides of dx, dw and db
    ACT: tl.constexpr,  # 0 identity, 1 ReLU, 2 sigmoid
    DY_PARTS: tl.constexpr,  # dy's slots (the next layer's split dx), added in order
    NEED_DX: tl.constexpr,  # launch dx tiles
    NEED_DW: tl.constexpr,  # launch dw (and db) tiles
    PRECISION: tl.constexpr,  # tl.dot input_precision
    SPLIT_M: tl.constexpr,  # dw partial sums over SPLIT_M chunks of the batch
    SPLIT_N: tl.constexpr,  # dx partial sums over SPLIT_N chunks of N, the dx product's depth
    DX_BLOCK_M: tl.constexpr, DX_BLOCK_N: tl.constexpr, DX_BLOCK_K: tl.constexpr,
    DW_BLOCK_M: tl.constexpr, DW_BLOCK_N: tl.constexpr, DW_BLOCK_K: tl.constexpr,
):
    # Programs [0, n_dx) own (tile, N chunk) pairs of dx, the rest (tile, batch chunk) pairs of
    # dw. The two branches are separate functions: Triton merges variables assigned in both
    # branches of a runtime `if`, and the dx and dw accumulators have different shapes.
    pid = tl.program_id(0)
    run = tl.program_id(1)  # one GAN of a sweep
    x_ptr += run * stride_xr
    w_ptr += run * stride_wr
    y_ptr += run * stride_yr
    dy_ptr += run * stride_dyr
    n_dx_tiles = tl.cdiv(M, DX_BLOCK_M) * tl.cdiv(K, DX_BLOCK_K)
    n_dx = n_dx_tiles * SPLIT_N if NEED_DX else 0
    if pid < n_dx:
        if SPLIT_N == 1:
            chunk = 0
            n_lo = 0
            n_hi = N
        else:  # this program's chunk of N (a whole number of blocks)
            chunk = pid // n_dx_tiles
            n_lo, n_hi = chunk_bounds(chunk, N, SPLIT_N, DX_BLOCK_N)
        _dx_tile(w_ptr, y_ptr, dy_ptr, dx_ptr + run * stride_dxr + chunk * stride_dxp, pid % n_dx_tiles, n_lo, n_hi,
                 M, N, K, stride_wk, stride_wn, stride_ym, stride_yn, stride_dym, stride_dyn, stride_dys,
                 ACT, DY_PARTS, PRECISION, DX_BLOCK_M, DX_BLOCK_N, DX_BLOCK_K)
    else:
        n_tiles = tl.cdiv(K, DW_BLOCK_K) * tl.cdiv(N, DW_BLOCK_N)
        part = (pid - n_dx) // n_tiles
        m_lo, m_hi = chunk_bounds(part, M, SPLIT_M, DW_BLOCK_M)
        _dw_tile(x_ptr, y_ptr, dy_ptr, dw_ptr + run * stride_dwr + part * stride_dwp,
                 db_ptr + run * stride_dbr + part * stride_dbp,
                 (pid - n_dx) % n_tiles, m_lo, m_hi, M, N, K, stride_xm, stride_xk,
                 stride_ym, stride_yn, stride_dym, stride_dyn, stride_dys, ACT, DY_PARTS, PRECISION,
                 DW_BLOCK_M, DW_BLOCK_N, DW_BLOCK_K)


def _check_act(act):
    if act not in _ACT_NAMES:
        raise ValueError(f"activation must be one of {sorted(_ACT_NAMES)} (none, ReLU, sigmoid), got {act!r}")
    return _ACT_NAMES[act]


def _forward_config(device, M, N, K):
    cfg = configs.lookup("linear_act_fwd", device, M, N, K)
    cfg["BLOCK_M"] = configs.block(cfg["BLOCK_M"], M)
    cfg["BLOCK_N"] = configs.block(cfg["BLOCK_N"], N)
    cfg["BLOCK_K"] = configs.block(cfg["BLOCK_K"], K)
    cfg["SPLIT_K"] = max(1, min(cfg["SPLIT_K"], triton.cdiv(K, cfg["BLOCK_K"])))
    return cfg


def forward_partials(device, M, N, K):
    """How many slots a split-K forward of this layer (partials=True) writes."""
    return _forward_config(device, M, N, K)["SPLIT_K"]


def backward_config(device, M, N, K, mode):
    """The backward's launch config for an (M, K) x (K, N) layer; mode "dx", "dw" or "dx+dw"."""
    cfg = configs.lookup("linear_act_bwd", device, M, N, K, mode)
    for part in ("DX", "DW"):
        for dim, size in (("M", M), ("N", N), ("K", K)):
            key = f"{part}_BLOCK_{dim}"
            cfg[key] = configs.block(cfg[key], size)
    cfg["SPLIT_M"] = max(1, min(cfg["SPLIT_M"], triton.cdiv(M, cfg["DW_BLOCK_M"])))
    cfg["SPLIT_N"] = max(1, min(cfg["SPLIT_N"], triton.cdiv(N, cfg["DX_BLOCK_N"])))
    return cfg


def dw_partials(device, M, N, K, mode="dw"):
    """How many partial-sum slots a split-M backward of this layer writes (dw, db with partials=True)."""
    return backward_config(device, M, N, K, mode)["SPLIT_M"]


def dx_partials(device, M, N, K, mode="dx+dw"):
    """How many partial-sum slots a split-N backward of this layer writes (dx with partials=True)."""
    return backward_config(device, M, N, K, mode)["SPLIT_N"]


def linear_act_forward(x, w, b, y, act, precision="ieee", rows=None, partials=False):
    """y[:] = act(x @ w + b). Writes the preallocated y; no allocation, no host sync.

    One run: x (M, K), w (K, N), b (N,), y (M, N). R runs (a sweep), in one launch: the same
    with a leading run axis, x (R, M, K), w (R, K, N), b (R, N), y (R, M, N).
    rows=(images, idx): the input is [images[idx]; x] (idx (G,) or (R, G) int64, valid row
    numbers of images (n, K)); y then has G + x's rows. partials=True: y (P, [R,] M, N) gets
    P >= forward_partials(...) slots of raw K-chunk sums, finished by the caller (module doc).
    Returns what Triton's launch returns (on a GPU the compiled kernel: its n_regs and n_spills
    are what the tuner checks)."""
    op = _check_act(act)
    check_precision(op, precision)
    n_slots, stride_ys = 1, 0
    if partials:
        y, n_slots, stride_ys = slots(op, "y", y, 2)
    x, w, b, y = (as_runs(op, n, t, d) for n, t, d in (("x", x, 2), ("w", w, 2), ("b", b, 1), ("y", y, 2)))
    R, Mx, K = x.shape
    if w.shape[1] != K:
        raise ValueError(f"{op}: x is {tuple(x.shape[1:])} but w is {tuple(w.shape[1:])}; w must be (in, out) with in = {K}")
    N = w.shape[2]
    images, idx, G = gathered(op, rows, R, K)
    if rows is not None and x.stride(2) != 1:
        raise ValueError(f"{op}: with gathered rows, x's rows must be contiguous (strides {x.stride()})")
    M = G + Mx
    check_runs(op, "w", w, R, (K, N))
    check_runs(op, "b", b, R, (N,))
    check_runs(op, "y", y, R, (M, N))
    check_run_dense(op, "y", y)
    check_devices(op, x=x, w=w, b=b, y=y, images=images, idx=idx)
    cfg = _forward_config(x.device, M, N, K)
    if not partials:
        cfg["SPLIT_K"] = 1
    check_slots(op, "y", n_slots, cfg["SPLIT_K"], "splits K in", "fastgan.kernels.linear_act.forward_partials")
    grid = (triton.cdiv(M, cfg["BLOCK_M"]) * cfg["SPLIT_K"], triton.cdiv(N, cfg["BLOCK_N"]), R)
    return _linear_act_fwd_kernel[grid](
        x, images if rows is not None else x, idx if rows is not None else x, w, b, y, M, N, K, G,
        *x.stride(), images.stride(0) if rows is not None else 0, idx.stride(0) if rows is not None else 0,
        *w.stride(), *b.stride(), y.stride(0), stride_ys,
        ACT=act, GATHER=rows is not None, PRECISION=precision, RAW=partials, enable_fp_fusion=FP_FUSION, **cfg,
    )


def linear_act_backward(x, w, y, dy, dx, dw, db, act, precision="ieee", partials=False, dy_partials=False):
    """Writes dx (if not None), dw and db (if dw is not None) for y = act(x @ w + b); one run's
    tensors, or R runs' with a leading run axis (see linear_act_forward), in one launch.

    partials=True: the outputs carry a leading axis of partial-sum slots, the slots past the
    config's split kept zero by the caller (see module doc): dx (P, [R,] M, K) with P >=
    dx_partials(...), dw (P, [R,] K, N) and db (P, [R,] N) with P >= dw_partials(...).
    dy_partials=True: dy is (P, [R,] M, N) slots (the next layer's dx with partials), added here
    in slot order. Returns what Triton's launch returns, as the forward."""
    op = _check_act(act) + " backward"
    check_precision(op, precision)
    dy_parts, stride_dys = 1, 0
    if dy_partials:
        dy, dy_parts, stride_dys = slots(op, "dy", dy, 2)
    x, w, y, dy = (as_runs(op, n, t, 2) for n, t in (("x", x), ("w", w), ("y", y), ("dy", dy)))
    R, M, K = x.shape
    N = w.shape[2]
    check_runs(op, "w", w, R, (K, N))
    check_runs(op, "y", y, R, (M, N))
    check_runs(op, "dy", dy, R, (M, N))
    if dx is None and dw is None:
        raise ValueError(f"{op}: nothing to compute (dx and dw are both None)")
    if (dw is None) != (db is None):
        raise ValueError(f"{op}: dw and db are computed together; pass both or neither")
    n_slots, slot_strides = {}, {"dx": 0, "dw": 0, "db": 0}
    outs = {}
    for name, t, shape in (("dx", dx, (M, K)), ("dw", dw, (K, N)), ("db", db, (N,))):
        if t is not None:
            if partials:
                t, n_slots[name], slot_strides[name] = slots(op, name, t, len(shape))
            t = outs[name] = as_runs(op, name, t, len(shape))
            check_runs(op, name, t, R, shape)
            check_run_dense(op, name, t)
    dx, dw, db = outs.get("dx"), outs.get("dw"), outs.get("db")
    check_devices(op, x=x, w=w, y=y, dy=dy, dx=dx, dw=dw, db=db)
    mode = "dx+dw" if dx is not None and dw is not None else "dx" if dx is not None else "dw"
    cfg = backward_config(x.device, M, N, K, mode)
    if not partials or dx is None:
        cfg["SPLIT_N"] = 1
    if not partials or dw is None:
        cfg["SPLIT_M"] = 1
    for name, n in n_slots.items():
        if name == "dx":
            check_slots(op, name, n, cfg["SPLIT_N"], "splits N in", "fastgan.kernels.linear_act.dx_partials")
        else:
            check_slots(op, name, n, cfg["SPLIT_M"], "splits the batch in", "fastgan.kernels.linear_act.dw_partials")
    n_dx = 0 if dx is None else triton.cdiv(M, cfg["DX_BLOCK_M"]) * triton.cdiv(K, cfg["DX_BLOCK_K"]) * cfg["SPLIT_N"]
    n_dw = 0 if dw is None else triton.cdiv(K, cfg["DW_BLOCK_K"]) * triton.cdiv(N, cfg["DW_BLOCK_N"]) * cfg["SPLIT_M"]
    return _linear_act_bwd_kernel[(n_dx + n_dw, R)](
        x, w, y, dy, dx if dx is not None else y, dw if dw is not None else y, db if db is not None else y,
        M, N, K, *x.stride(), *w.stride(), *y.stride(), *dy.stride(), stride_dys,
        dx.stride(0) if dx is not None else 0, dw.stride(0) if dw is not None else 0,
        db.stride(0) if db is not None else 0, slot_strides["dx"], slot_strides["dw"], slot_strides["db"],
        ACT=act, DY_PARTS=dy_parts, NEED_DX=dx is not None, NEED_DW=dw is not None,
        PRECISION=precision, enable_fp_fusion=FP_FUSION, **cfg,
    )


class LinearAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, act):
        y = torch.empty((x.shape[0], w.shape[1]), device=x.device, dtype=x.dtype)
        linear_act_forward(x, w, b, y, act)
        ctx.save_for_backward(x, w, y)
        ctx.act = act
        return y

    @staticmethod
    def backward(ctx, dy):
        x, w, y = ctx.saved_tensors
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        dx = torch.empty_like(x, memory_format=torch.contiguous_format) if need_dx else None
        dw = db = None
        if need_dw or need_db:
            dw = torch.empty((w.shape[0], w.shape[1]), device=w.device, dtype=w.dtype)
            db = torch.empty((w.shape[1],), device=w.device, dtype=w.dtype)
        if dx is not None or dw is not None:
            linear_act_backward(x, w, y, dy, dx, dw, db, ctx.act)
        return dx, dw if need_dw else None, db if need_db else None, None


def linear(x, w, b):
    """x @ w + b, differentiable."""
    return LinearAct.apply(x, w, b, ACT_NONE)


def linear_relu(x, w, b):
    """relu(x @ w + b), differentiable."""
    return LinearAct.apply(x, w, b, ACT_RELU)


def linear_sigmoid(x, w, b):
    """sigmoid(x @ w + b), differentiable."""
    return LinearAct.apply(x, w, b, ACT_SIGMOID)
