"""Benchmark setup: without a GPU the Triton kernels run in Triton's interpreter (set before
`kernels` is imported), and only small CPU cases run."""

import os
import platform

import pytest

from fastgan.cli import reproducible_products  # noqa: E402  (light: no torch)

reproducible_products()  # as `fastgan train` does, before torch's first product
import torch  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICE = torch.device("cuda" if HAS_CUDA else "cpu")


def sync():
    if HAS_CUDA:
        torch.cuda.synchronize()


def environment():
    """What every result's extra_info carries."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "device_name": torch.cuda.get_device_name() if HAS_CUDA else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "torch": torch.__version__,
        "triton": triton_version,
        "triton_interpreter": os.environ.get("TRITON_INTERPRET") == "1",
    }


def skip_unless(condition, reason):
    if not condition:
        pytest.skip(reason)
