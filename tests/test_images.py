"""fastgan.images (your own images: a folder or an .npz, converted and cached) and the runs that
train on them, on images the tests make."""

import json

import numpy as np
import pytest
from conftest import DEVICES
from helpers import process_env
from PIL import Image

from fastgan import checkpoint, run
from fastgan.config import Config
from fastgan.errors import FastganError
from fastgan.images import load_custom


def _folder(path, n=12, size=(24, 20), mode="RGB", seed=0):
    """n random images of size (W, H) in `mode`, half of them in a subfolder, and a text file."""
    rng = np.random.default_rng(seed)
    (path / "sub").mkdir(parents=True)
    for i in range(n):
        shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8), mode).save(
            path / ("sub" if i % 2 else "") / f"{i:03d}.png")
    (path / "notes.txt").write_text("not an image")
    return path


def test_a_folder_is_cropped_resized_and_cached(tmp_path):
    """Centre crop of a 12 x 8 image to its middle 8 x 8 (no resize at --image-size 8), colour kept;
    the second load reads the cache (nothing converted); a changed folder is converted again."""
    src = tmp_path / "imgs"
    src.mkdir()
    a = np.zeros((8, 12, 3), np.uint8)
    a[:, :2], a[:, 2:10], a[:, 10:] = 50, (200, 100, 30), 90
    for i in range(3):
        Image.fromarray(a).save(src / f"{i}.png")
    said = []
    got = load_custom(src, 8, None, tmp_path / "cache", said.append)["train_images"]
    assert got.shape == (3, 3, 8, 8) and (got.transpose(0, 2, 3, 1) == (200, 100, 30)).all()
    assert said == [f"converting 3 images from {src} to 8x8x3 ..."]
    said.clear()
    assert np.array_equal(load_custom(src, 8, None, tmp_path / "cache", said.append)["train_images"], got)
    assert said == []
    Image.fromarray(a // 2).save(src / "0.png")
    changed = load_custom(src, 8, None, tmp_path / "cache", said.append)["train_images"]
    assert len(said) == 1 and (changed[0].transpose(1, 2, 0) == (100, 50, 15)).all()


def test_sizes_and_channels_default_to_the_datas_own(tmp_path):
    """Square images keep their side; others become 28 x 28; grey stays grey (also a grey image
    saved as RGB); --channels 1 makes colour grey; a resize uses Lanczos (a flat image stays flat)."""
    square = load_custom(_folder(tmp_path / "sq", size=(16, 16)), None, None, None)["train_images"]
    assert square.shape == (12, 3, 16, 16)
    assert load_custom(_folder(tmp_path / "wide", size=(30, 20)), None, None, None)["train_images"].shape == \
        (12, 3, 28, 28)
    grey = load_custom(_folder(tmp_path / "grey", size=(16, 16), mode="L"), 10, None, None)["train_images"]
    assert grey.shape == (12, 1, 10, 10)
    rgb_grey = tmp_path / "rgbgrey"
    rgb_grey.mkdir()
    Image.fromarray(np.full((9, 9), 77, np.uint8)).convert("RGB").save(rgb_grey / "a.png")
    flat = load_custom(rgb_grey, 18, None, None)["train_images"]
    assert flat.shape == (1, 1, 18, 18) and (flat == 77).all()
    assert load_custom(tmp_path / "sq", None, 1, None)["train_images"].shape == (12, 1, 16, 16)


def test_an_npz_with_labels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (10, 12, 12, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=np.arange(10) % 4)
    got = load_custom(tmp_path / "d.npz", None, None, None)
    assert np.array_equal(got["train_images"], images.transpose(0, 3, 1, 2))
    assert np.array_equal(got["train_labels"], np.arange(10) % 4)


def test_bad_input_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_text("not a png")
    np.savez(tmp_path / "mixed.npz", images=np.array([np.zeros((4, 4), np.uint8), np.zeros((5, 5), np.uint8)],
                                                     dtype=object))
    np.savez(tmp_path / "noimages.npz", pixels=np.zeros((3, 8, 8), np.uint8))
    np.savez(tmp_path / "floats.npz", images=np.zeros((3, 8, 8)))
    np.savez(tmp_path / "grey.npz", images=np.zeros((3, 8, 8), np.uint8))
    cases = [
        ((tmp_path / "empty",), "holds no image files"),
        ((junk,), f"no image in {junk} could be read \\(1 files\\): the first, {junk / 'a.png'}, gives"),
        ((tmp_path / "mixed.npz",), "`images` is an object array, not one uint8 array \\(images of mixed sizes\\?\\)"),
        ((tmp_path / "noimages.npz",), "has no `images` array \\(it has: pixels\\)"),
        ((tmp_path / "floats.npz",), "`images` must be uint8"),
        ((tmp_path / "grey.npz", None, 3), "holds grey images; --channels 3 would only copy"),
        ((tmp_path / "grey.npz", 4), "--image-size 4 is too small"),
        ((tmp_path / "nothing",), "no such folder or file"),
    ]
    for args, message in cases:
        with pytest.raises(FastganError, match=message) as err:
            load_custom(*args)
        assert "\n" not in str(err.value)
    assert load_custom(tmp_path / "grey.npz", None, 3, None, convert_channels=True)["train_images"].shape == (3, 3, 8, 8)


@pytest.mark.parametrize("backend, iters", [("eager", 6), ("fused", 2)])
def test_colour_images_of_another_size_train_and_write_every_output(tmp_path, backend, iters):
    """A folder of 20 x 24 RGB PNGs at --image-size 12 (X = 432) through the eager reference and
    the Triton trainer (Triton's interpreter here): grids in colour, checkpoints naming the image
    shape, a label-free measurement, best.pt; fastgan.load draws (n, 3, 12, 12); a checkpoint
    does not resume on other data."""
    import fastgan

    src = _folder(tmp_path / "imgs", n=20)
    cfg = Config(dataset=str(src), image_size=12, iters=iters, batch_size=8, sample_every=iters, ckpt_every=iters,
                 eval_every=iters, log_every=1, device="cpu" if backend == "eager" else DEVICES[0], backend=backend,
                 out=str(tmp_path / "run"),
                 data_dir=str(tmp_path / "cache"), r1=1.0, g_ema=0.9)
    out = run.train(cfg, log=lambda m: None, show_progress=False)
    grid = np.asarray(Image.open(out / "samples" / f"{iters:07d}.png"))
    assert grid.shape[2] in (3, 4) and not np.array_equal(grid[..., 0], grid[..., 1])  # colour
    state = checkpoint.load(out / "checkpoints" / checkpoint.ckpt_name(iters))
    assert state["arch"] == {"z_dim": 100, "h_dim": 128, "x_dim": 432, "image": [3, 12, 12]}
    assert state["params"]["G_W2"].shape == (128, 432) and "ema" in state
    measured = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"fd"' in x]
    assert len(measured) == 1 and measured[0]["fd"] > 0 and "classes" not in measured[0]
    assert (out / "checkpoints" / "best.pt").is_file() and json.loads((out / "config.json").read_text())["image_size"] == 12
    G = fastgan.load(out)
    assert G.sample(5).shape == (5, 3, 12, 12) and G.ema
    with pytest.raises(FastganError, match=r"--image-size 10 differs from the run's 12: a resume keeps"):
        run.train(Config(resume=str(out), image_size=10, iters=iters + 1), log=lambda m: None, show_progress=False)
    for p in src.rglob("*.png"):  # the folder now holds grey images: the run's data has changed
        Image.open(p).convert("L").save(p)
    with pytest.raises(FastganError, match=r"the checkpoint draws 12x12 RGB images and the data is 12x12 grey"):
        run.train(Config(resume=str(out), iters=iters + 1), log=lambda m: None, show_progress=False)


# --- hostile input: each case used to end in a traceback or be accepted ------------------------


def test_unusable_files_are_skipped_and_counted(tmp_path, monkeypatch):
    """A file the user may not read (PermissionError while reading it: simulated, as the tests may
    run as root, whom permissions do not stop), a decompression bomb (Pillow's pixel limit
    lowered so a 40 x 40 image passes it), a looping link and a dangling one: each skipped and
    counted in one notice naming the first; the other images convert, and the cache key covers
    only the files used."""
    from PIL import Image as PILImage

    src = _folder(tmp_path / "imgs", n=6, size=(8, 8))
    PILImage.fromarray(np.zeros((40, 40), np.uint8)).save(src / "bomb.png")
    (src / "loop.png").symlink_to(src / "loop.png")
    (src / "gone.png").symlink_to(tmp_path / "nowhere.png")
    secret = src / "000.png"
    real_read = type(secret).read_bytes

    def read_bytes(path):
        if path == secret:
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)
    monkeypatch.setattr(type(secret), "read_bytes", read_bytes)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 40 * 40 // 2 - 1)  # past twice the limit: DecompressionBombError
    said = []
    got = load_custom(src, None, None, tmp_path / "cache", said.append)["train_images"]
    assert got.shape == (5, 3, 8, 8)
    assert said[0].startswith(f"notice: skipped 4 unusable of 9 files in {src} (the first, {secret}: PermissionError")
    monkeypatch.undo()
    (src / "bomb.png").unlink()
    (src / "loop.png").unlink()
    (src / "gone.png").unlink()
    said.clear()
    assert load_custom(src, None, None, tmp_path / "cache", said.append)["train_images"].shape == (6, 3, 8, 8)
    assert said == [f"converting 6 images from {src} to 8x8x3 ..."]  # a new key: 000.png is used now


def test_npz_errors_name_what_is_wrong(tmp_path):
    """Random bytes are not an .npz (they used to be called "images of mixed sizes"); object
    labels are the labels' fault (they were blamed on the images); a bare .npy under an .npz
    name; images with no pixels ((64, 0, 0) used to train on 64 empty images); 4 x 4 images
    without --image-size (the message used to name a flag the user did not give)."""
    (tmp_path / "random.npz").write_bytes(np.random.default_rng(0).bytes(5000))
    np.savez(tmp_path / "objlabels.npz", images=np.zeros((4, 8, 8), np.uint8), labels=np.array([1, "a", None, 3], object))
    np.save(tmp_path / "bare.npy", np.zeros((4, 8, 8), np.uint8))
    (tmp_path / "bare.npy").rename(tmp_path / "bare.npz")
    np.savez(tmp_path / "empty.npz", images=np.zeros((64, 0, 0), np.uint8))
    np.savez(tmp_path / "none.npz", images=np.zeros((0, 8, 8), np.uint8))
    np.savez(tmp_path / "tiny.npz", images=np.zeros((4, 4, 4), np.uint8))
    cases = [
        ("random.npz", "random.npz is not a readable .npz \\(ValueError\\); save your images with np.savez"),
        ("objlabels.npz", "objlabels.npz: `labels` is an object array; it must be integers, one per image"),
        ("bare.npz", "bare.npz holds one array, not an .npz of named arrays"),
        ("empty.npz", "empty.npz: `images` \\(64, 0, 0\\) holds no pixels"),
        ("none.npz", "none.npz: `images` \\(0, 8, 8\\) holds no pixels"),
        ("tiny.npz", "tiny.npz holds 4x4 images, below the 8-pixel side fastgan trains on; resize them up with "
                     "--image-size 28"),
    ]
    for name, message in cases:
        with pytest.raises(FastganError, match=message) as err:
            load_custom(tmp_path / name, None, None, None)
        assert "\n" not in str(err.value)


def test_a_size_past_the_memory_is_refused_before_converting(tmp_path, monkeypatch):
    """--image-size 100000 used to be a 1.12 TiB allocation's traceback: one line, before any image
    is converted (the same check for prepare's --size, named so). The free memory set to 16 GiB:
    the same on any machine."""
    from fastgan import images

    monkeypatch.setattr(images, "convert", lambda *a: pytest.fail("converted"))
    monkeypatch.setattr(images, "host_free_bytes", lambda: 16 << 30)
    src = _folder(tmp_path / "imgs", n=3, size=(8, 8))
    for flag in ("--image-size", "--size"):
        with pytest.raises(FastganError, match=f"3 images at 100000x100000 RGB need about 83.8 GiB of memory and "
                                               f"16.0 GiB is free: lower {flag}$"):
            load_custom(src, 100000, None, None, size_flag=flag)


RACE = """import sys
from fastgan.images import load_custom
arrays = load_custom(sys.argv[1], None, None, sys.argv[2], log=lambda m: None)
print(arrays["train_images"].sum())
"""


def test_two_processes_filling_one_cache_at_once(tmp_path):
    """Two trainings started at once on the same new folder and --data-dir both convert it and
    write the cache: one crashed when both wrote the same fixed temp name. Now each writes its own
    temp file and renames it whole: both succeed with the same array, one cache file, no temp
    file left. Three rounds, each with a fresh cache folder, the two processes started together."""
    import subprocess
    import sys

    src = _folder(tmp_path / "imgs", n=200, size=(32, 32))
    for round_ in range(3):
        cache = tmp_path / f"cache{round_}"
        procs = [subprocess.Popen([sys.executable, "-c", RACE, str(src), str(cache)], env=process_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [err[-1000:] for _, err in results]
        assert results[0][0] == results[1][0]
        assert [p.name for p in cache.iterdir()] == [next(cache.glob("custom-*-32x32x3.npz")).name]


def test_a_folders_subfolders_are_its_classes_for_conditional(tmp_path, capsys):
    """folder_classes (--conditional): the first-level subfolders name the classes (sorted),
    cached apart from the unlabelled conversion of the same images; an image outside them, or
    one class only, is one line; a conditional run on the folder trains and names the classes."""
    src = tmp_path / "pets"
    for i, cls in enumerate(["dog", "cat", "dog", "cat", "emu"]):
        (src / cls / "deep").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(src / cls / ("deep" if i == 2 else "") / f"{i}.png")
    plain = load_custom(src, None, None, tmp_path / "cache", lambda m: None)
    assert "train_labels" not in plain
    got = load_custom(src, None, None, tmp_path / "cache", lambda m: None, folder_classes=True)
    assert got["class_names"].tolist() == ["cat", "dog", "emu"]
    # files in sorted path order: cat/1, cat/3, dog/0, dog/deep/2, emu/4
    assert got["train_labels"].tolist() == [0, 0, 1, 1, 2] and got["train_images"][0, 0, 0, 0] == 40
    again = load_custom(src, None, None, tmp_path / "cache", lambda m: None, folder_classes=True)
    assert again["class_names"].tolist() == ["cat", "dog", "emu"] and len(list((tmp_path / "cache").iterdir())) == 2
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(src / "loose.png")
    with pytest.raises(FastganError, match=r"first-level subfolders as its classes, and .*loose.png is not in one"):
        load_custom(src, None, None, tmp_path / "cache", lambda m: None, folder_classes=True)
    (src / "loose.png").unlink()
    out = run.train(Config(iters=4, batch_size=4, sample_every=2, ckpt_every=2, device="cpu", backend="eager",
                           dataset=str(src), conditional=True, out=str(tmp_path / "run"), data_dir=str(tmp_path / "cache")),
                    log=lambda m: None, show_progress=False)
    assert checkpoint.load(out / "checkpoints" / "0000004.pt")["arch"]["classes"] == ["cat", "dog", "emu"]
