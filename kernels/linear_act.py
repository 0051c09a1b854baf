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

Precision: `input_precision` is a constexpr: "ieee" (default; exact fp32 products, what the
tests compare at 1e-5) or "tf32" (the tensor cores' 10-bit mantissa products; relative error
about 1e-3, tested separately on GPU).

Configs (block sizes, warps, pipeline stages) are data: FWD_CONFIGS and BWD_CONFIGS below, with
the sm_90 register and spill counts that chose them.

Limits and trade-offs: dw reduces over the whole batch inside one program per (in, out) tile,
so at batch 8192 each dw program loops 128 times; split-M with a second reduction pass would
shorten that at the cost of a launch. Not yet measured on a GPU: see benchmarks/NOTES.md.
"""

import torch
import triton
import triton.language as tl

from ._checks import as_runs, check_devices, check_run_dense, check_runs

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
def _pre_act_grad(y_ptr, dy_ptr, rm, rn, M, N, stride_ym, stride_yn, stride_dym, stride_dyn, ACT: tl.constexpr):
    """The (rm, rn) tile of g = dy * act'(y), the gradient of the pre-activation (0 outside)."""
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    y = tl.load(y_ptr + rm[:, None] * stride_ym + rn[None, :] * stride_yn, mask=mask, other=0.0)
    dy = tl.load(dy_ptr + rm[:, None] * stride_dym + rn[None, :] * stride_dyn, mask=mask, other=0.0)
    return dy * _act_grad(y, ACT)


@triton.jit
def _linear_act_fwd_kernel(
    x_ptr,  # (R, M, K) input
    w_ptr,  # (R, K, N) weight, stored (in, out)
    b_ptr,  # (R, N) bias
    y_ptr,  # (R, M, N) output, contiguous within a run
    M, N, K,
    stride_xr, stride_xm, stride_xk,  # x strides in elements
    stride_wr, stride_wk, stride_wn,  # w strides in elements
    stride_br, stride_b,  # b strides in elements
    stride_yr,  # y's run stride (rows of N within a run)
    ACT: tl.constexpr,  # 0 identity, 1 ReLU, 2 sigmoid
    PRECISION: tl.constexpr,  # tl.dot input_precision: "ieee" or "tf32"
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    run = tl.program_id(2)  # one GAN of a sweep: its own inputs, weights and outputs
    x_ptr += run * stride_xr
    w_ptr += run * stride_wr
    b_ptr += run * stride_br
    y_ptr += run * stride_yr
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        a = tl.load(x_ptr + rm[:, None] * stride_xm + kk[None, :] * stride_xk,
                    mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0)
        b = tl.load(w_ptr + kk[:, None] * stride_wk + rn[None, :] * stride_wn,
                    mask=(kk[:, None] < K) & (rn[None, :] < N), other=0.0)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    acc += tl.load(b_ptr + rn * stride_b, mask=rn < N, other=0.0)[None, :]
    if ACT == 1:
        acc = tl.maximum(acc, 0.0)
    elif ACT == 2:
        acc = 1.0 / (1.0 + tl.exp(-acc))
    tl.store(y_ptr + rm[:, None] * N + rn[None, :], acc, mask=(rm[:, None] < M) & (rn[None, :] < N))


@triton.jit
def _dx_tile(w_ptr, y_ptr, dy_ptr, dx_ptr, tile, M, N, K,
             stride_wk, stride_wn, stride_ym, stride_yn, stride_dym, stride_dyn,
             ACT: tl.constexpr, PRECISION: tl.constexpr,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """dx[m, k] = sum_n g[m, n] w[k, n] for one (BLOCK_M, BLOCK_K) tile of dx."""
    n_tiles_k = tl.cdiv(K, BLOCK_K)
    rm = (tile // n_tiles_k) * BLOCK_M + tl.arange(0, BLOCK_M)
    rk = (tile % n_tiles_k) * BLOCK_K + tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        rn = n0 + tl.arange(0, BLOCK_N)
        g = _pre_act_grad(y_ptr, dy_ptr, rm, rn, M, N, stride_ym, stride_yn, stride_dym, stride_dyn, ACT)
        wt = tl.load(w_ptr + rn[:, None] * stride_wn + rk[None, :] * stride_wk,
                     mask=(rn[:, None] < N) & (rk[None, :] < K), other=0.0)
        acc = tl.dot(g, wt, acc, input_precision=PRECISION)
    tl.store(dx_ptr + rm[:, None] * K + rk[None, :], acc, mask=(rm[:, None] < M) & (rk[None, :] < K))


@triton.jit
def _dw_tile(x_ptr, y_ptr, dy_ptr, dw_ptr, db_ptr, tile, M, N, K,
             stride_xm, stride_xk, stride_ym, stride_yn, stride_dym, stride_dyn,
             ACT: tl.constexpr, PRECISION: tl.constexpr,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """dw[k, n] = sum_m x[m, k] g[m, n] for one (BLOCK_K, BLOCK_N) tile of dw; db[n] = sum_m g[m, n]
    on the first row of tiles."""
    n_tiles_n = tl.cdiv(N, BLOCK_N)
    tile_k = tile // n_tiles_n
    rk = tile_k * BLOCK_K + tl.arange(0, BLOCK_K)
    rn = (tile % n_tiles_n) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
    dbias = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for m0 in range(0, M, BLOCK_M):
        rm = m0 + tl.arange(0, BLOCK_M)
        g = _pre_act_grad(y_ptr, dy_ptr, rm, rn, M, N, stride_ym, stride_yn, stride_dym, stride_dyn, ACT)
        xt = tl.load(x_ptr + rk[:, None] * stride_xk + rm[None, :] * stride_xm,
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
    dy_ptr,  # (R, M, N) gradient of the output
    dx_ptr,  # (R, M, K) out: gradient of x, contiguous within a run (unused unless NEED_DX)
    dw_ptr,  # (R, K, N) out: gradient of w, contiguous within a run (unused unless NEED_DW)
    db_ptr,  # (R, N) out: gradient of b, contiguous within a run (unused unless NEED_DW)
    M, N, K,
    stride_xr, stride_xm, stride_xk,  # x strides
    stride_wr, stride_wk, stride_wn,  # w strides
    stride_yr, stride_ym, stride_yn,  # y strides
    stride_dyr, stride_dym, stride_dyn,  # dy strides
    stride_dxr, stride_dwr, stride_dbr,  # run strides of the outputs
    ACT: tl.constexpr,  # 0 identity, 1 ReLU, 2 sigmoid
    NEED_DX: tl.constexpr,  # launch dx tiles
    NEED_DW: tl.constexpr,  # launch dw (and db) tiles
    PRECISION: tl.constexpr,  # tl.dot input_precision
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # Programs [0, n_dx) own dx tiles, the rest dw tiles. The two branches are separate
    # functions: Triton merges variables assigned in both branches of a runtime `if`, and the
    # dx and dw accumulators have different shapes unless BLOCK_M == BLOCK_N.
    pid = tl.program_id(0)
    run = tl.program_id(1)  # one GAN of a sweep
    x_ptr += run * stride_xr
    w_ptr += run * stride_wr
    y_ptr += run * stride_yr
    dy_ptr += run * stride_dyr
    dx_ptr += run * stride_dxr
    dw_ptr += run * stride_dwr
    db_ptr += run * stride_dbr
    n_dx = tl.cdiv(M, BLOCK_M) * tl.cdiv(K, BLOCK_K) if NEED_DX else 0
    if pid < n_dx:
        _dx_tile(w_ptr, y_ptr, dy_ptr, dx_ptr, pid, M, N, K, stride_wk, stride_wn, stride_ym, stride_yn,
                 stride_dym, stride_dyn, ACT, PRECISION, BLOCK_M, BLOCK_N, BLOCK_K)
    else:
        _dw_tile(x_ptr, y_ptr, dy_ptr, dw_ptr, db_ptr, pid - n_dx, M, N, K, stride_xm, stride_xk,
                 stride_ym, stride_yn, stride_dym, stride_dyn, ACT, PRECISION, BLOCK_M, BLOCK_N, BLOCK_K)


# Launch configurations are data. Per kernel, rows (largest M the row serves, BLOCK_M,
# num_warps, num_stages), the first row with M <= its bound applies; BLOCK_N and BLOCK_K follow
# the layer (the next power of two of N and K, between 16 and 64). Measured with the sm_90
# compile (python -m benchmarks.kernel_report): the backward at 64x64x64 with the default
# 3 stages of software pipelining used 255 registers and spilled ~1.7 KB per thread (4 warps;
# 8 warps still spilled 344 B); unpipelined (1 stage) it uses 139 (dW) / 168 (dx) registers and
# spills nothing, since its tiles of g = dy * act'(y) are computed in registers, not streamed.
# FP_FUSION: FMA contraction, set explicitly (Triton 3.10 changes its default); the products
# are fused multiply-adds either way.
FWD_CONFIGS = ((32, 32, 4, 3), (None, 64, 4, 3))
BWD_CONFIGS = ((32, 32, 4, 1), (None, 64, 4, 1))
FP_FUSION = True


def _config(table, M, N, K):
    """The launch meta-parameters for an (M, K) x (K, N) product from a config table."""
    for max_m, block_m, num_warps, num_stages in table:
        if max_m is None or M <= max_m:
            break
    return dict(
        BLOCK_M=block_m,
        BLOCK_N=min(64, max(16, triton.next_power_of_2(N))),
        BLOCK_K=min(64, max(16, triton.next_power_of_2(K))),
        num_warps=num_warps, num_stages=num_stages, enable_fp_fusion=FP_FUSION,
    )


def _check_act(act):
    if act not in _ACT_NAMES:
        raise ValueError(f"activation must be one of {sorted(_ACT_NAMES)} (none, ReLU, sigmoid), got {act!r}")
    return _ACT_NAMES[act]


def linear_act_forward(x, w, b, y, act, allow_tf32=False):
    """y[:] = act(x @ w + b). Writes the preallocated y; no allocation, no host sync.

    One run: x (M, K), w (K, N), b (N,), y (M, N). R runs (a sweep), in one launch: the same
    with a leading run axis, x (R, M, K), w (R, K, N), b (R, N), y (R, M, N)."""
    op = _check_act(act)
    x, w, b, y = (as_runs(op, n, t, d) for n, t, d in (("x", x, 2), ("w", w, 2), ("b", b, 1), ("y", y, 2)))
    R, M, K = x.shape
    if w.shape[1] != K:
        raise ValueError(f"{op}: x is {tuple(x.shape[1:])} but w is {tuple(w.shape[1:])}; w must be (in, out) with in = {K}")
    N = w.shape[2]
    check_runs(op, "w", w, R, (K, N))
    check_runs(op, "b", b, R, (N,))
    check_runs(op, "y", y, R, (M, N))
    check_run_dense(op, "y", y)
    check_devices(op, x=x, w=w, b=b, y=y)
    cfg = _config(FWD_CONFIGS, M, N, K)
    grid = (triton.cdiv(M, cfg["BLOCK_M"]), triton.cdiv(N, cfg["BLOCK_N"]), R)
    _linear_act_fwd_kernel[grid](
        x, w, b, y, M, N, K,
        *x.stride(), *w.stride(), *b.stride(), y.stride(0),
        ACT=act, PRECISION="tf32" if allow_tf32 else "ieee", **cfg,
    )


def linear_act_backward(x, w, y, dy, dx, dw, db, act, allow_tf32=False):
    """Writes dx (if not None), dw and db (if dw is not None) for y = act(x @ w + b); one run's
    tensors, or R runs' with a leading run axis (see linear_act_forward), in one launch."""
    op = _check_act(act) + " backward"
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
    outs = {}
    for name, t, shape in (("dx", dx, (M, K)), ("dw", dw, (K, N)), ("db", db, (N,))):
        if t is not None:
            t = outs[name] = as_runs(op, name, t, len(shape))
            check_runs(op, name, t, R, shape)
            check_run_dense(op, name, t)
    dx, dw, db = outs.get("dx"), outs.get("dw"), outs.get("db")
    check_devices(op, x=x, w=w, y=y, dy=dy, dx=dx, dw=dw, db=db)
    cfg = _config(BWD_CONFIGS, M, N, K)
    bm, bn, bk = cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_K"]
    n_dx = triton.cdiv(M, bm) * triton.cdiv(K, bk) if dx is not None else 0
    n_dw = triton.cdiv(K, bk) * triton.cdiv(N, bn) if dw is not None else 0
    _linear_act_bwd_kernel[(n_dx + n_dw, R)](
        x, w, y, dy,
        dx if dx is not None else y, dw if dw is not None else y, db if db is not None else y,
        M, N, K,
        *x.stride(), *w.stride(), *y.stride(), *dy.stride(),
        dx.stride(0) if dx is not None else 0, dw.stride(0) if dw is not None else 0,
        db.stride(0) if db is not None else 0,
        ACT=act, NEED_DX=dx is not None, NEED_DW=dw is not None,
        PRECISION="tf32" if allow_tf32 else "ieee", **cfg,
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
