"""Test setup: without a GPU the Triton kernels run in Triton's interpreter on CPU tensors.

TRITON_INTERPRET must be set before `kernels` is imported (Triton reads it when the kernels
are decorated), so it is set here, before any test module imports them.
"""

import os

import pytest

from fastgan.cli import reproducible_products  # noqa: E402  (light: no torch)

reproducible_products()  # as `fastgan train` does, before torch's first product
import torch  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Devices every kernel test runs on: the CPU interpreter always works; CUDA when present.
DEVICES = ["cuda"] if HAS_CUDA else ["cpu"]
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (none visible to torch)")


@pytest.fixture
def small_mnist(monkeypatch):
    """Shrink the expected dataset sizes so tests can write MNIST-format files of a few KB."""
    import fastgan.data as data

    monkeypatch.setattr(data, "N_TRAIN", 300)
    monkeypatch.setattr(data, "N_TEST", 50)
    return data


@pytest.fixture
def data_dir(tmp_path, small_mnist):
    """A data folder with a small synthetic MNIST cache (300 + 50 images)."""
    from helpers import fake_arrays

    from fastgan.atomic import save_npz

    folder = tmp_path / "data"
    save_npz(folder / "mnist.npz", fake_arrays(300, 50))
    return folder
