"""Adam over one flat buffer: all of a network's tensors updated in one launch.

Fused
  torch.optim.Adam's update (the same operation order as its foreach path):
      m <- m + (1 - b1) (g - m)              (lerp)
      v <- b2 v + (1 - b2) g^2
      p <- p - step_size * m / (sqrt(v) / bc2_sqrt + eps)
  with step_size = lr / (1 - b1^t) and bc2_sqrt = sqrt(1 - b2^t) read from device memory
  (`bias_ptr`, two floats per step, computed in float64 before they are rounded), so a
  captured CUDA graph replays with each iteration's own step count instead of a frozen one.

Exactness: square root and divisions are IEEE round-to-nearest (`tl.sqrt_rn`, `tl.div_rn`; plain
`tl.sqrt` and `/` compile to approximate instructions on NVIDIA GPUs), and FMA contraction is
off (FP_FUSION), so each operation is rounded once as written, like torch's separate foreach
ops. torch's own CUDA kernels may contract a multiply-add inside one op (lerp, addcmul,
addcdiv), so the two agree to about an ulp per step rather than bitwise.

Limits: float32; p, g, m, v contiguous and of one length (a network's parameters live in one
flat buffer with views per tensor). Memory-bound: 4 reads and 3 writes of 4 bytes per
parameter, ~3 MB per network per step. Not yet timed on a GPU: see benchmarks/NOTES.md.
"""

import math

import torch
import triton
import triton.language as tl

from ._checks import check_dense, check_devices, check_shape, check_tensor

BLOCK = 1024
FP_FUSION = False


@triton.jit
def _adam_kernel(
    p_ptr,  # (n,) parameters, updated in place
    g_ptr,  # (n,) gradients
    m_ptr,  # (n,) first moments, updated in place
    v_ptr,  # (n,) second moments, updated in place
    bias_ptr,  # (2,) [step_size = lr / (1 - b1^t), sqrt(1 - b2^t)] for this step
    n,  # number of parameters
    one_minus_beta1, beta2, one_minus_beta2, eps,  # Adam's constants (1 - beta rounded from float64, as torch)
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    step_size = tl.load(bias_ptr)
    bc2_sqrt = tl.load(bias_ptr + 1)
    p = tl.load(p_ptr + offs, mask=mask)
    g = tl.load(g_ptr + offs, mask=mask)
    m = tl.load(m_ptr + offs, mask=mask)
    v = tl.load(v_ptr + offs, mask=mask)
    m = m + one_minus_beta1 * (g - m)
    v = v * beta2 + one_minus_beta2 * g * g
    p = p - step_size * tl.div_rn(m, tl.div_rn(tl.sqrt_rn(v), bc2_sqrt) + eps)
    tl.store(p_ptr + offs, p, mask=mask)
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)


def adam_bias_terms(steps, lr, beta1, beta2):
    """(len(steps), 2) float64 [lr / (1 - b1^t), sqrt(1 - b2^t)] for a tensor of step numbers t >= 1."""
    t = steps.to(torch.float64)
    return torch.stack([lr / (1 - beta1**t), torch.sqrt(1 - beta2**t)], dim=-1)


def adam_update(p, g, m, v, bias, beta1, beta2, eps):
    """In place: one Adam step over flat buffers; `bias` is a (2,) float32 device tensor.

    A captured graph replays the same specialization only if `bias` keeps its 16-byte
    alignment from one iteration to the next: keep per-iteration rows 16 bytes apart.
    """
    op = "adam_update"
    for name, t in (("p", p), ("g", g), ("m", m), ("v", v)):
        check_tensor(op, name, t, 1)
        check_shape(op, name, t, p.shape)
        check_dense(op, name, t)
    check_tensor(op, "bias", bias, 1)
    check_shape(op, "bias", bias, (2,))
    if not (0 <= beta1 < 1 and 0 <= beta2 < 1 and eps > 0 and math.isfinite(eps)):
        raise ValueError(f"{op}: need 0 <= beta1, beta2 < 1 and eps > 0, got {beta1}, {beta2}, {eps}")
    check_devices(op, p=p, g=g, m=m, v=v, bias=bias)
    n = p.numel()
    _adam_kernel[(triton.cdiv(n, BLOCK),)](p, g, m, v, bias, n, 1.0 - beta1, beta2, 1.0 - beta2, eps, BLOCK=BLOCK,
                                          enable_fp_fusion=FP_FUSION)
