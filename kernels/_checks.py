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


def as_runs(op, name, t, ndim, dtype=torch.float32):
    """`t` with a leading run axis: a (R, ...) tensor of ndim + 1 dimensions as it is, a single
    run's tensor of ndim dimensions as a (1, ...) view. Checks type and dtype like check_tensor."""
    if not torch.is_tensor(t):
        raise TypeError(f"{op}: {name} must be a tensor, got {type(t).__name__}")
    if t.dim() not in (ndim, ndim + 1):
        raise ValueError(f"{op}: {name} must be {ndim}-D, or {ndim + 1}-D with runs first; got shape {tuple(t.shape)}")
    check_tensor(op, name, t, t.dim(), dtype)
    return t if t.dim() == ndim + 1 else t.unsqueeze(0)


def check_runs(op, name, t, runs, shape):
    """`t` (runs first, from as_runs) has `runs` runs of `shape` each."""
    if t.shape[0] != runs:
        raise ValueError(f"{op}: {name} has {t.shape[0]} runs, expected {runs} (the runs of the first input)")
    check_shape(op, name, t[0], shape)


def check_run_dense(op, name, t):
    """An output with runs first: each run's part contiguous (runs may sit apart, not overlap)."""
    inner = t[0]
    if not inner.is_contiguous() or (t.shape[0] > 1 and t.stride(0) < inner.numel()):
        raise ValueError(f"{op}: output {name} must be contiguous within each run (shape {tuple(t.shape)}, "
                         f"strides {t.stride()})")


def slots(op, name, t, ndim):
    """A tensor of partial-sum slots, (P, ...) over a ([R,] ndim-D) tensor: returns (slot 0, P,
    the slot stride). The kernels read or write slot s at slot 0's pointer + s * stride."""
    if not torch.is_tensor(t) or t.dim() not in (ndim + 1, ndim + 2):
        got = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
        raise ValueError(f"{op}: with partials, {name} has a leading axis of slots, (P, [R,] ...) with {ndim} "
                         f"dimensions after the runs; got {got}")
    return t[0], t.shape[0], t.stride(0)


def check_slots(op, name, have, need, split, allocate):
    """An output with `have` slots holds a launch whose config `split`s into `need` (e.g. "splits
    the batch in"); else one line saying which function tells how many to allocate."""
    if have < need:
        raise ValueError(f"{op}: {name} has {have} slots but this launch's config {split} {need}: allocate "
                         f"{allocate}(...) slots")
