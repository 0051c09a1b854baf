"""Test helpers: small synthetic MNIST-format data (random strokes, never zeros), error measures,
and the D kernels' inputs."""

import gzip
import math
import struct

import numpy as np
import torch


def fake_arrays(n_train, n_test, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }


def idx_bytes(array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(folder, arrays, gz=True):
    from fastgan.data import IDX_FILES

    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_FILES.items():
        data = idx_bytes(arrays[key])
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return folder


def rel_err(a, b):
    """Normwise relative error of a against the float64 reference b."""
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def assert_adam_params_close(got, want, steps, lr=1e-3, name=""):
    """Parameters from two fp32 implementations after `steps` Adam steps.

    Adam moves each weight by about lr whatever the size of its gradient, so a gradient element
    that is cancellation noise (|g| near 1e-7 of the tensor's largest) can legitimately move
    differently by up to ~lr per step in two summation orders. Everywhere else the two agree to
    lr * 1e-3. So: all but 0.1% of elements within 1e-6, and none further apart than 2 lr per step.
    """
    diff = (got.detach().double() - want.detach().double()).abs()
    assert (diff > 1e-6).double().mean() < 1e-3, f"{name}: {int((diff > 1e-6).sum())} elements differ by > 1e-6"
    assert diff.max() <= 2 * lr * steps, f"{name}: max difference {diff.max():.3g}"


def write_mnist_sized(folder):
    """An MNIST-sized synthetic cache (60,000 + 10,000 images of 0/255 noise): what the loader
    accepts in a process of its own, where the tests' size patch does not reach."""
    from fastgan.atomic import save_npz

    rng = np.random.default_rng(0)
    save_npz(folder / "mnist.npz", {
        "train_images": (rng.integers(0, 2, (60000, 28, 28)) * 255).astype(np.uint8),
        "train_labels": rng.integers(0, 10, 60000).astype(np.uint8),
        "test_images": (rng.integers(0, 2, (10000, 28, 28)) * 255).astype(np.uint8),
        "test_labels": rng.integers(0, 10, 10000).astype(np.uint8),
    })
    return folder


def d_inputs(M, H, K, device, runs=()):
    """D's input and parameters as in the GAN (x ~ U(0, 1) like pixels, weights of the seed's
    scale, small biases) and D1's float32 output h = relu(x W1 + b1): (x, w1, b1, w2, b2, h),
    each with leading `runs` dimensions. For the tests of the D kernels (d_grad, d_input_grad)."""
    x = torch.rand(*runs, M, K, device=device)
    w1 = torch.randn(*runs, K, H, device=device) / math.sqrt(K / 2)
    b1 = torch.randn(*runs, H, device=device) * 0.1
    w2 = torch.randn(*runs, H, 1, device=device) / math.sqrt(H / 2)
    b2 = torch.randn(*runs, 1, device=device)
    return x, w1, b1, w2, b2, torch.relu(x @ w1 + b1.unsqueeze(-2))


def process_env():
    """The environment of a train.py (or torchrun) process in a test: compiled kernels, not the
    interpreter; one thread; unbuffered output; no rank variables of an outer torchrun."""
    import os
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[1]), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env

