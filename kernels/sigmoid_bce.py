"""Fused mean sigmoid cross-entropy on logits, with its gradient produced in the forward pass.

loss = mean_i [ max(l_i, 0) - l_i t_i + log1p(exp(-|l_i|)) ]   (= F.binary_cross_entropy_with_logits)
d loss / d l_i = (sigmoid(l_i) - t_i) / n,    d loss / d t_i = -l_i / n

Fused
  forward : one program streams the logits once, writes the mean loss and d loss / d logits
            (the backward then only scales it by the incoming gradient: no second read of
            the targets, no recomputation of the sigmoid).
  backward: one elementwise launch scales the saved gradient by the upstream gradient, read
            from device memory (no host sync), and, under the NEED_DTARGET flag, writes
            d loss / d target.

The gradient is formed as (1 - t) - s or s - t with s = e / (1 + e) <= 1/2, so a confident
logit (sigmoid near 1, target 1: D on real data) keeps full relative precision instead of
cancelling in sigmoid(l) - 1.

Targets are a constant (TARGET_IS_TENSOR=False: 0.0 or 1.0 for a GAN, any float allowed) or a
tensor of the logits' shape. Stable for |logits| up to 1e4 and beyond: exp only ever sees
-|l|, and log1p(e) is computed as log(u) e / (u - 1) with u = 1 + e, accurate to a few ulp for
every e, where log(1 + e) would lose up to 6e-8 / e relative (all of it once 1 + e rounds to 1).

Limits: float32, any number of elements n >= 1 (flattened; inputs must be contiguous). One
program does the reduction, so the sum is deterministic; it walks n in blocks of 1024, which
at the GAN's n = 128 is one block. Not yet timed on a GPU: see benchmarks/NOTES.md.
"""

import torch
import triton
import triton.language as tl

from ._checks import check_dense, check_devices, check_shape, check_tensor
from .shared import FP_FUSION, bce_and_grad

BLOCK = 1024


@triton.jit
def _sigmoid_bce_fwd_kernel(
    logits_ptr,  # (n,) logits, contiguous
    target_ptr,  # (n,) targets, contiguous (unused unless TARGET_IS_TENSOR)
    target_value,  # float: the constant target when not TARGET_IS_TENSOR
    loss_ptr,  # (1,) out: mean loss
    dlogits_ptr,  # (n,) out: d mean loss / d logits
    n,  # number of elements
    inv_n,  # 1 / n as float
    TARGET_IS_TENSOR: tl.constexpr,
    BLOCK: tl.constexpr,
):
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for start in range(0, n, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < n
        logit = tl.load(logits_ptr + offs, mask=mask, other=0.0)
        if TARGET_IS_TENSOR:
            target = tl.load(target_ptr + offs, mask=mask, other=0.0)
        else:
            target = tl.full((BLOCK,), target_value, tl.float32)
        loss, diff = bce_and_grad(logit, target)
        acc += tl.where(mask, loss, 0.0)
        tl.store(dlogits_ptr + offs, diff * inv_n, mask=mask)
    tl.store(loss_ptr, tl.sum(acc, axis=0) * inv_n)


@triton.jit
def _sigmoid_bce_bwd_kernel(
    dlogits_ptr,  # (n,) d loss / d logits saved by the forward
    logits_ptr,  # (n,) logits (read only if NEED_DTARGET)
    grad_ptr,  # (1,) upstream gradient of the loss, in device memory
    out_ptr,  # (n,) out: gradient of the logits
    dtarget_ptr,  # (n,) out: gradient of the targets (written only if NEED_DTARGET)
    n,  # number of elements
    inv_n,  # 1 / n as float
    NEED_DTARGET: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(grad_ptr)
    tl.store(out_ptr + offs, tl.load(dlogits_ptr + offs, mask=mask, other=0.0) * g, mask=mask)
    if NEED_DTARGET:
        logit = tl.load(logits_ptr + offs, mask=mask, other=0.0)
        tl.store(dtarget_ptr + offs, -logit * inv_n * g, mask=mask)


def _check_logits(op, logits, target):
    if not torch.is_tensor(logits) or logits.dtype != torch.float32:
        raise TypeError(f"{op}: logits must be a float32 tensor, got {getattr(logits, 'dtype', type(logits).__name__)}")
    if logits.numel() == 0:
        raise ValueError(f"{op}: logits are empty; the mean of no elements is undefined")
    check_dense(op, "logits", logits)
    if target is not None:
        check_tensor(op, "target", target, logits.dim())
        check_shape(op, "target", target, logits.shape)
        check_dense(op, "target", target)


def sigmoid_bce_forward(logits, target, target_value, loss, dlogits):
    """loss[0] = mean BCE; dlogits = its gradient. target is a tensor or None (then target_value)."""
    op = "sigmoid_bce_with_logits"
    _check_logits(op, logits, target)
    check_tensor(op, "loss", loss, 1)
    check_shape(op, "loss", loss, (1,))
    check_tensor(op, "dlogits", dlogits, logits.dim())
    check_shape(op, "dlogits", dlogits, logits.shape)
    check_dense(op, "dlogits", dlogits)
    check_devices(op, logits=logits, target=target, loss=loss, dlogits=dlogits)
    n = logits.numel()
    _sigmoid_bce_fwd_kernel[(1,)](
        logits, target if target is not None else logits, float(target_value), loss, dlogits, n, 1.0 / n,
        TARGET_IS_TENSOR=target is not None, BLOCK=BLOCK, enable_fp_fusion=FP_FUSION,
    )


def sigmoid_bce_backward(dlogits, logits, grad, out, dtarget=None):
    """out = dlogits * grad[0]; dtarget = -logits * grad[0] / n when given."""
    op = "sigmoid_bce_with_logits backward"
    _check_logits(op, logits, None)
    for name, t in (("dlogits", dlogits), ("out", out), ("dtarget", dtarget)):
        if t is not None:
            check_tensor(op, name, t, logits.dim())
            check_shape(op, name, t, logits.shape)
            check_dense(op, name, t)
    if not torch.is_tensor(grad) or grad.numel() != 1 or grad.dtype != torch.float32:
        raise ValueError(f"{op}: grad must be a one-element float32 tensor")
    check_devices(op, dlogits=dlogits, logits=logits, grad=grad, out=out, dtarget=dtarget)
    n = logits.numel()
    _sigmoid_bce_bwd_kernel[(triton.cdiv(n, BLOCK),)](
        dlogits, logits, grad, out, dtarget if dtarget is not None else out, n, 1.0 / n,
        NEED_DTARGET=dtarget is not None, BLOCK=BLOCK, enable_fp_fusion=FP_FUSION,
    )


class SigmoidBCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, target_value):
        logits = logits.contiguous()
        if target is not None:
            target = target.contiguous()
        loss = torch.empty(1, device=logits.device, dtype=logits.dtype)
        dlogits = torch.empty_like(logits)
        sigmoid_bce_forward(logits, target, target_value, loss, dlogits)
        ctx.save_for_backward(dlogits, logits)
        return loss.reshape(())

    @staticmethod
    def backward(ctx, grad):
        dlogits, logits = ctx.saved_tensors
        need_dtarget = ctx.needs_input_grad[1]
        out = torch.empty_like(logits)
        dtarget = torch.empty_like(logits) if need_dtarget else None
        sigmoid_bce_backward(dlogits, logits, grad.reshape(1).contiguous(), out, dtarget)
        return out, dtarget, None


def sigmoid_bce_with_logits(logits, target):
    """Mean binary cross-entropy of sigmoid(logits) against `target`: a float or a tensor."""
    if torch.is_tensor(target):
        if target.dtype != torch.float32:
            raise TypeError(f"sigmoid_bce_with_logits: target must be float32, got {target.dtype}")
        return SigmoidBCE.apply(logits, target, 0.0)
    return SigmoidBCE.apply(logits, None, float(target))
