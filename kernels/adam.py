"""Adam over one flat buffer: all of a network's tensors updated in one launch.

Fused
  torch.optim.Adam's update (the same operation order as its foreach path):
      m <- m + (1 - b1) (g - m)              (lerp)
      v <- b2 v + (1 - b2) g^2
      p <- p - step_size * m / (sqrt(v) / bc2_sqrt + eps)
  with step_size = lr / (1 - b1^t), bc2_sqrt = sqrt(1 - b2^t) and 1 - b1 read from device
  memory (`hyper_ptr`, per run and step, computed in float64 before they are rounded), so a
  captured CUDA graph replays with each iteration's own step count instead of a frozen one,
  and the runs of a sweep (a leading run axis, one launch) each keep their own lr and beta1.

EMA (EMA flag): an exponential moving average of the updated parameters, in the same pass,
      e <- e + w (p - e)
  with w = 1 - beta read from `hyper_ptr` (its fourth entry), per run: G's EMA weights
  (fastgan's --g-ema) cost one more read and write of 4 bytes per parameter, no launch.

Exactness: square root and divisions are IEEE round-to-nearest (`tl.sqrt_rn`, `tl.div_rn`; plain
`tl.sqrt` and `/` compile to approximate instructions on NVIDIA GPUs), and FMA contraction is
off (FP_FUSION), so each operation is rounded once as written, like torch's separate foreach
ops. torch's own CUDA kernels may contract a multiply-add inside one op (lerp, addcmul,
addcdiv), so the two agree to about an ulp per step rather than bitwise.

Gradient partial sums: g may carry a leading axis of P slots (the split-M weight gradients of
kernels.linear_act); the kernel adds them in slot order, ((g0 + g1) + g2) + ..., before the
update, so the split needs no extra launch and stays deterministic. Each slot costs one more read
of 4 bytes per parameter.

Limits: float32; p, g, m, v contiguous and of one length (a network's parameters live in one
flat buffer with views per tensor). Memory-bound: 4 reads and 3 writes of 4 bytes per
parameter, ~3 MB per network per step (plus 0.4 MB per extra gradient slot). Block size and
warps come from kernels/configs. Not yet timed on a GPU: see benchmarks/NOTES.md.
"""

import math

import torch
import triton
import triton.language as tl

from . import configs
from ._checks import as_runs, check_devices, check_run_dense, check_runs

FP_FUSION = False


@triton.jit
def _adam_kernel(
    p_ptr,  # (R, n) parameters, updated in place
    g_ptr,  # (PARTS, R, n) gradients, as partial sums
    m_ptr,  # (R, n) first moments, updated in place
    v_ptr,  # (R, n) second moments, updated in place
    hyper_ptr,  # (R, >= 3) per run [step_size = lr / (1 - b1^t), sqrt(1 - b2^t), 1 - b1, (EMA) 1 - beta]
    ema_ptr,  # (R, n) EMA of the parameters, updated in place (only if EMA)
    n,  # number of parameters of one run
    stride_pr, stride_gr, stride_mr, stride_vr, stride_hr, stride_er,  # run strides
    stride_gp,  # gradient slot stride
    beta2, one_minus_beta2, eps,  # Adam's constants shared by the runs (1 - beta2 rounded from float64, as torch)
    PARTS: tl.constexpr,  # gradient slots, added in order
    EMA: tl.constexpr,  # also update ema_ptr
    BLOCK: tl.constexpr,
):
    run = tl.program_id(1)  # one GAN of a sweep: its own lr and beta1 (in hyper), and buffers
    p_ptr += run * stride_pr
    g_ptr += run * stride_gr
    m_ptr += run * stride_mr
    v_ptr += run * stride_vr
    hyper_ptr += run * stride_hr
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    step_size = tl.load(hyper_ptr)
    bc2_sqrt = tl.load(hyper_ptr + 1)
    one_minus_beta1 = tl.load(hyper_ptr + 2)
    p = tl.load(p_ptr + offs, mask=mask)
    g = tl.load(g_ptr + offs, mask=mask)
    for s in tl.static_range(1, PARTS):
        g += tl.load(g_ptr + s * stride_gp + offs, mask=mask)
    m = tl.load(m_ptr + offs, mask=mask)
    v = tl.load(v_ptr + offs, mask=mask)
    m = m + one_minus_beta1 * (g - m)
    v = v * beta2 + one_minus_beta2 * g * g
    p = p - step_size * tl.div_rn(m, tl.div_rn(tl.sqrt_rn(v), bc2_sqrt) + eps)
    tl.store(p_ptr + offs, p, mask=mask)
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)
    if EMA:
        ema_ptr += run * stride_er
        e = tl.load(ema_ptr + offs, mask=mask)
        tl.store(ema_ptr + offs, e + tl.load(hyper_ptr + 3) * (p - e), mask=mask)


def adam_terms(steps, lr, beta1, beta2):
    """(len(steps), R, 3) float64 [lr / (1 - b1^t), sqrt(1 - b2^t), 1 - b1] for step numbers t >= 1
    (a tensor) and R runs' lr and beta1 (floats for one run, or sequences of R; lr may also be a
    (len(steps), R) tensor: each step's own, a decaying schedule); round to float32 for the
    kernel, as torch rounds its Python-float scalars."""
    t = steps.to(torch.float64).reshape(-1, 1)
    lr = torch.as_tensor(lr, dtype=torch.float64, device=t.device)
    lr = lr if lr.dim() == 2 else lr.reshape(1, -1)
    b1 = torch.as_tensor(beta1, dtype=torch.float64, device=t.device).reshape(1, -1)
    return torch.stack(torch.broadcast_tensors(lr / (1 - b1**t), torch.sqrt(1 - beta2**t), 1 - b1), dim=-1)


def adam_update(p, g, m, v, hyper, beta2, eps, ema=None):
    """In place: one Adam step over flat buffers. One run: p, g, m, v (n,) and `hyper` (>= 3,),
    a row of adam_terms in float32 on the device. R runs in one launch: (R, n) and (R, >= 3).
    g with one more leading axis, (P, n) or (P, R, n): P partial sums of the gradient, added in
    order. With `ema` (like p): also ema <- ema + hyper[3] (p - ema), hyper then (>= 4,) per run.

    A captured graph replays the same specialization only if `hyper` keeps its 16-byte
    alignment from one iteration to the next: keep per-iteration rows 16 bytes apart.
    """
    op = "adam_update"
    p_dims = p.dim() if torch.is_tensor(p) else 0
    p = as_runs(op, "p", p, 1)
    R, n = p.shape
    if torch.is_tensor(g) and g.dim() == p_dims + 1:
        parts, stride_gp = g.shape[0], g.stride(0)
        g = g[0]
    else:
        parts, stride_gp = 1, 0
    bufs = {"p": p}
    for name, t in (("g", g), ("m", m), ("v", v), ("ema", ema)):
        if t is None:
            continue
        bufs[name] = t = as_runs(op, name, t, 1)
        check_runs(op, name, t, R, (n,))
    for name, t in bufs.items():
        check_run_dense(op, name, t)
    hyper = as_runs(op, "hyper", hyper, 1)
    width = 3 if ema is None else 4
    if hyper.shape[0] != R or hyper.shape[1] < width or hyper.stride(1) != 1:
        raise ValueError(f"{op}: hyper must hold [step size, sqrt(1 - beta2^t), 1 - beta1"
                         f"{'' if ema is None else ', 1 - EMA beta'}] per run, contiguous: shape ({R}, >= {width}), "
                         f"got {tuple(hyper.shape)}")
    if not (0 <= beta2 < 1 and eps > 0 and math.isfinite(eps)):
        raise ValueError(f"{op}: need 0 <= beta2 < 1 and eps > 0, got {beta2}, {eps}")
    check_devices(op, hyper=hyper, **bufs)
    cfg = configs.lookup("adam", p.device, M=n)
    _adam_kernel[(triton.cdiv(n, cfg["BLOCK"]), R)](
        p, bufs["g"], bufs["m"], bufs["v"], hyper, bufs.get("ema", p), n,
        p.stride(0), bufs["g"].stride(0), bufs["m"].stride(0), bufs["v"].stride(0), hyper.stride(0),
        bufs["ema"].stride(0) if ema is not None else 0, stride_gp,
        beta2, 1.0 - beta2, eps, PARTS=parts, EMA=ema is not None, enable_fp_fusion=FP_FUSION, **cfg,
    )
