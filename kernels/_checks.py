"""Argument checks shared by the launchers: each failure says what was wrong and what to pass."""

import os

import torch

# Kernels are decorated when `kernels` is imported; Triton reads TRITON_INTERPRET then.
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
# Set while kernels.aot.record() lists launches instead of running them: CPU tensors are fine then.
RECORDING = False


def check_tensor(op, name, t, ndim, dtype=torch.float32):
    if not torch.is_tensor(t):
        raise TypeError(f"{op}: {name} must be a tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if t.dtype != dtype:
        raise TypeError(f"{op}: {name} must be {dtype}, got {t.dtype}")


def check_shape(op, name, t, shape):
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} has shape {tuple(t.shape)}, expected {tuple(shape)}")


def check_dense(op, name, t):
    """Outputs must be contiguous: a strided output could alias itself and race."""
    if not t.is_contiguous():
        raise ValueError(f"{op}: output {name} must be contiguous (strides {t.stride()})")


def check_devices(op, **tensors):
    devices = {t.device for t in tensors.values() if t is not None}
    if len(devices) != 1:
        names = ", ".join(f"{k} on {t.device}" for k, t in tensors.items() if t is not None)
        raise ValueError(f"{op}: all tensors must be on one device ({names})")
    device = devices.pop()
    if device.type == "cpu" and not (INTERPRETED or RECORDING):
        raise ValueError(
            f"{op}: CPU tensors need Triton's interpreter: set TRITON_INTERPRET=1 before importing kernels, "
            "or pass CUDA tensors"
        )
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{op}: tensors on {device} are not supported; use CUDA tensors")
