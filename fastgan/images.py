"""Your own images: a folder of image files or an .npz array, converted once to the training
format and cached (`--dataset PATH`; `fastgan prepare` does the same explicitly).

The training format is uint8 (n, C, S, S): square, channels first, as G draws them. Conversion:
centre-crop to a square, resize to S x S with Pillow's Lanczos filter (none when already S x S),
to grey (ITU-R 601-2 luma) or RGB. A folder is searched recursively for the files Pillow reads
(IMAGE_SUFFIXES); the files that cannot be used are skipped, counted and the first named: not a
readable image, not readable by you (permissions), a dangling or looping link, or past Pillow's
decompression-bomb limit (about 179 million pixels). Skipped rather than refused: one bad file
among thousands should not stop a training, and the notice says how many. Each file is decoded
twice, once to learn the data's sizes and colours and once to convert it, and never held beyond
that: a folder larger than memory converts into its (n, C, S, S) array (checked against the free
memory before converting). An .npz holds `images`, uint8
(n, H, W) or (n, H, W, C) with C = 1 or 3, and optionally `labels` (n,) integers.

Grey data is never silently made colour: `--channels 3` on grey images is refused unless the
conversion is asked for (`fastgan prepare SRC OUT.npz --channels 3`). Colour to grey
is a conversion like a resize, done when `--channels 1` is given.

The cache, beside the other data: `custom-<hash>-<S>x<S>x<C>.npz`, the hash over every used
file's relative path and bytes (a folder) or the .npz's bytes, so a changed folder is converted
again. Two trainings converting the same data at once each write their own temp file and rename
it over the cache (fastgan.atomic): either whole file is the same conversion.
"""

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from .atomic import save_npz
from .cli import command
from .errors import FastganError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
MIN_SIZE = 8  # a side below this leaves no image to learn
DEFAULT_SIZE = 28  # for data that is not square


def image_files(folder):
    """The folder's image files (by suffix; dangling and looping links included, for the
    reader to count), recursively, in a stable order."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())


def _square(img, size):
    """A PIL image centre-cropped to a square and resized to size x size (Lanczos)."""
    from PIL import Image

    w, h = img.size
    side = min(w, h)
    if w != h:
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    return img if side == size else img.resize((size, size), Image.Resampling.LANCZOS)


GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def read_folder(folder, log=print):
    """(the readable image files, their (width, height) sizes, their channel count: 3 if any is
    colour, else 1, the hash of their relative paths and bytes), reading and decoding each once
    without keeping it (a folder larger than memory converts one image at a time); FastganError
    if the folder holds no image Pillow can read."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    paths = image_files(folder)
    if not paths:
        raise FastganError(f"{folder} holds no image files ({', '.join(IMAGE_SUFFIXES)}), searched recursively; "
                           "point --dataset at a folder of images or an .npz")
    readable, sizes, bad, colour, h = [], set(), [], False, hashlib.sha256()
    for p in paths:
        try:
            data = p.read_bytes()  # PermissionError, a dangling or looping link: OSError
            with Image.open(io.BytesIO(data)) as img:  # past Pillow's pixel limit: DecompressionBombError
                img.load()
                size, grey = img.size, img.mode in GREY_MODES or _is_grey(img)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
            bad.append((p, e))
            continue
        readable.append(p)
        sizes.add(size)
        colour = colour or not grey
        h.update(str(p.relative_to(folder)).encode())
        h.update(data)
    if not readable:
        p, e = bad[0]
        raise FastganError(f"no image in {folder} could be read ({len(bad)} files): the first, {p}, gives "
                           f"{type(e).__name__}: {e}")
    if bad:
        p, e = bad[0]
        log(f"notice: skipped {len(bad)} unusable of {len(paths)} files in {folder} (the first, {p}: "
            f"{type(e).__name__}: {e})")
    return readable, sizes, 3 if colour else 1, h.hexdigest()[:16]


def _folder_classes(folder, paths):
    """(class numbers, class names) of a folder's images from their first-level subfolders (names
    in sorted order); FastganError if an image sits outside them."""
    parts = [p.relative_to(folder).parts for p in paths]
    outside = next((p for p, pt in zip(paths, parts) if len(pt) < 2), None)
    if outside is not None:
        raise FastganError(f"--conditional takes a folder's first-level subfolders as its classes, and {outside} is "
                           f"not in one: move each image into its class's folder, or give an .npz with `labels`")
    names = sorted({pt[0] for pt in parts})
    return np.array([names.index(pt[0]) for pt in parts], dtype=np.int64), names


def _is_grey(img):
    """A colour-mode image whose channels are all equal (a grey image saved as RGB)."""
    if img.mode == "P":
        img = img.convert("RGB")
    if img.mode not in ("RGB", "RGBA"):
        return False
    a = np.asarray(img)[..., :3]
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())


def _npz_array(path, f, name):
    """Array `name` of an open .npz; FastganError if it is an object array (pickled)."""
    try:
        return f[name]
    except ValueError:  # allow_pickle=False refuses object arrays
        if name == "images":
            raise FastganError(f"{path}: `images` is an object array, not one uint8 array (images of mixed sizes?); "
                               f"save a folder of them instead, or convert them with {command('prepare')}") from None
        raise FastganError(f"{path}: `{name}` is an object array; it must be integers, one per image") from None
    except Exception as e:  # a torn or corrupt member
        raise FastganError(f"{path}: `{name}` is unreadable ({type(e).__name__}: {e})") from None


def read_npz(path):
    """(images uint8 (n, H, W) or (n, H, W, C), labels or None) from an .npz, checked."""
    try:
        f = np.load(path, allow_pickle=False)
    except Exception as e:  # not a zip: np.load takes it for a pickle and refuses it (ValueError)
        raise FastganError(f"{path} is not a readable .npz ({type(e).__name__}); save your images with "
                           "np.savez(PATH, images=uint8 array (n, H, W) or (n, H, W, C))") from None
    if not hasattr(f, "files"):  # a bare .npy saved under an .npz name
        raise FastganError(f"{path} holds one array, not an .npz of named arrays; save your images with "
                           "np.savez(PATH, images=...)")
    with f:
        if "images" not in f.files:
            raise FastganError(f"{path} has no `images` array (it has: {', '.join(f.files) or 'nothing'}); save "
                               "your images as np.savez(PATH, images=uint8 array (n, H, W) or (n, H, W, C))")
        images = _npz_array(path, f, "images")
        labels = _npz_array(path, f, "labels") if "labels" in f.files else None
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
        raise FastganError(f"{path}: `images` must be uint8 (n, H, W) or (n, H, W, C) with C = 1 or 3; got "
                           f"{images.dtype} {images.shape}")
    if images.size == 0:
        raise FastganError(f"{path}: `images` {images.shape} holds no pixels; it needs at least one image of at "
                           f"least {MIN_SIZE} x {MIN_SIZE}")
    if labels is not None and (labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype, np.integer)):
        raise FastganError(f"{path}: `labels` must be integers, one per image ({len(images)}); got "
                           f"{labels.dtype} {labels.shape}")
    return images, labels


def host_free_bytes():
    """The memory free on this machine now, in bytes (what the memory checks compare against)."""
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_conversion(n, image, size_flag="--image-size", headroom=0.8):
    """One line if n images converted to `image` (C, S, S) would not fit in `headroom` of the free
    memory (the uint8 array convert() fills), before anything is converted."""
    c, s, _ = image
    need, have = n * c * s * s, host_free_bytes()
    if need > headroom * have:
        raise FastganError(f"{n:,} images at {s}x{s} {'RGB' if c == 3 else 'grey'} need about {need / 2**30:,.1f} GiB of "
                           f"memory and {have / 2**30:,.1f} GiB is free: lower {size_flag}")


def convert(images, size, channels):
    """uint8 (n, channels, size, size) from image files (read one at a time) or a uint8
    (n, H, W[, C]) array."""
    from PIL import Image

    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(images), channels, size, size), dtype=np.uint8)
    for i, src in enumerate(images):
        if isinstance(src, np.ndarray):
            img = Image.fromarray(src[..., 0] if src.ndim == 3 and src.shape[2] == 1 else src)
        else:
            try:
                with Image.open(src) as opened:
                    img = opened.copy()
            except Exception as e:  # read once already (read_folder): changed or removed since
                raise FastganError(f"{src} could not be read again ({type(e).__name__}: {e}); it changed while "
                                   "being converted: run again") from None
        if img.mode in ("I", "I;16", "F"):
            img = img.point(lambda v: v / 256).convert("L") if img.mode == "I;16" else img.convert("L")
        a = np.asarray(_square(img.convert(mode), size))
        out[i] = a[None] if channels == 1 else a.transpose(2, 0, 1)
    return out


def load_custom(path, image_size=None, channels=None, data_dir=None, log=print, convert_channels=False, check=None,
                size_flag="--image-size", folder_classes=False):
    """{"train_images": uint8 (n, C, S, S)[, "train_labels"]} for a folder or .npz at `path`, with
    its conversion cached in `data_dir`. `image_size`, `channels`: None for the data's own (a side
    of DEFAULT_SIZE for data that is not square). `convert_channels`: allow grey to RGB.
    `check(n, (C, S, S))` runs before anything is converted (a run's batch and memory checks).
    `size_flag`: the flag that gives image_size, for the messages. `folder_classes` (--conditional):
    a folder's first-level subfolders are the classes (labels and "class_names" in the arrays)."""
    path = Path(path)
    if not path.exists():
        raise FastganError(f"{path}: no such folder or file; give a folder of images or an .npz")
    is_npz = path.is_file()
    if is_npz and path.suffix != ".npz":
        raise FastganError(f"{path} is a file but not an .npz; give a folder of images or an .npz")
    if is_npz:
        images, labels = read_npz(path)
        h, w = images.shape[1:3]
        side, own_channels = (h if h == w else None), (1 if images.ndim == 3 else images.shape[3])
        try:
            key = hashlib.sha256(path.name.encode() + path.read_bytes()).hexdigest()[:16]
        except OSError as e:
            raise FastganError(f"cannot read {path}: {e.strerror or e}") from None
    else:
        images, sizes, own_channels, key = read_folder(path, log)
        labels, names = _folder_classes(path, images) if folder_classes else (None, None)
        (w, h), alike = next(iter(sizes)), len(sizes) == 1
        side = w if alike and w == h else None
    size = image_size or side or DEFAULT_SIZE
    channels = channels or own_channels
    if size < MIN_SIZE:
        raise FastganError(f"{size_flag} {size} is too small; images need a side of at least {MIN_SIZE} pixels" if image_size
                           else f"{path} holds {size}x{size} images, below the {MIN_SIZE}-pixel side fastgan trains "
                                f"on; resize them up with {size_flag} {DEFAULT_SIZE}")
    if channels == 3 and own_channels == 1 and not convert_channels:
        raise FastganError(f"{path} holds grey images; --channels 3 would only copy the grey three times: train with "
                           f"--channels 1, or convert them first: {command('prepare')} {path} OUT.npz --channels 3")
    if check is not None:
        check(len(images), (channels, size, size))
    check_conversion(len(images), (channels, size, size), size_flag)
    tag = "-classes" if folder_classes and not is_npz else ""  # the same images with their folders' labels
    cache = Path(data_dir) / f"custom-{key}-{size}x{size}x{channels}{tag}.npz" if data_dir is not None else None
    if cache is not None and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except Exception as e:  # a torn cache is rebuilt
            log(f"warning: cache {cache} is unreadable ({type(e).__name__}); converting {path} again")
    log(f"converting {len(images):,} images from {path} to {size}x{size}x{channels} ...")
    arrays = {"train_images": convert(images, size, channels)}
    if labels is not None:
        arrays["train_labels"] = labels.astype(np.int64)
    if tag:
        arrays["class_names"] = np.array(names)
    if cache is not None:
        save_npz(cache, arrays, "write the data cache")
    return arrays
