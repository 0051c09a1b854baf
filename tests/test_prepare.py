"""python -m fastgan.prepare: a folder (or .npz) to the .npz fastgan trains on."""

import numpy as np
import pytest
from PIL import Image

from fastgan import prepare
from fastgan.images import load_custom


def test_prepare_writes_what_training_reads(tmp_path, capsys):
    """A folder of grey 10 x 14 images to 8 x 8 RGB (grey to colour only here, asked for); the
    written .npz trains as the same array; an existing OUT needs --force; bad input: one line."""
    src = tmp_path / "imgs"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray((rng.random((14, 10)) * 255).astype(np.uint8), "L").save(src / f"{i}.png")
    out = tmp_path / "out.npz"
    assert prepare.main([str(src), str(out), "--size", "8", "--channels", "3"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}: 5 images, 8x8, RGB"
    images = np.load(out)["images"]
    assert images.shape == (5, 8, 8, 3) and (images[..., 0] == images[..., 2]).all()
    again = load_custom(out, None, 3, None, convert_channels=True)["train_images"]
    assert np.array_equal(again, images.transpose(0, 3, 1, 2))
    assert prepare.main([str(src), str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert prepare.main([str(tmp_path / "missing"), str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'missing'}: no such folder or file; give a folder of images or an .npz"


def _imgs(tmp_path, n=5):
    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(n):
        Image.fromarray(np.full((8, 8), 10 * i, np.uint8), "L").save(src / f"{i}.png")
    return src


def test_the_output_is_checked_before_converting(tmp_path, capsys, monkeypatch):
    """An output in a missing folder, a folder that refuses writes (read-only: simulated by the
    probe's fsync failing with EROFS, as root ignores permissions) or a folder given as OUT: one
    line, exit code 2, before any image is converted, nothing left behind (these were tracebacks,
    after converting every image)."""
    import errno
    import os

    from fastgan import images

    src = _imgs(tmp_path)
    monkeypatch.setattr(images, "convert", lambda *a: pytest.fail("converted before the output was checked"))
    assert prepare.main([str(src), str(tmp_path / "missing" / "out.npz")]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {tmp_path / 'missing'} is not a folder; create it first, or "
                                               "write OUT somewhere else")
    (tmp_path / "dir.npz").mkdir()
    assert prepare.main([str(src), str(tmp_path / "dir.npz")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'dir.npz'} is a folder; give the .npz file to write"
    ro = tmp_path / "ro"
    ro.mkdir()

    def read_only(fd):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(os, "fsync", read_only)
    assert prepare.main([str(src), str(ro / "out.npz")]) == 2
    assert capsys.readouterr().err.strip() == (f"error: cannot write to {ro}: Read-only file system (pick an --out you "
                                               "can write to)")
    assert list(ro.iterdir()) == []


def test_a_full_disk_leaves_no_temp_file(tmp_path, capsys, monkeypatch):
    """The disk fills while OUT is written (simulated: the compressed write stops with ENOSPC after
    4 MB): one line, exit code 2, no OUT and no temp file (a 4 MB .tmp used to stay behind)."""
    import errno
    import os

    from fastgan import atomic

    src = _imgs(tmp_path)

    def full_disk(f, **arrays):
        f.write(b"\0" * (4 << 20))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(atomic.np, "savez_compressed", full_disk)
    out = tmp_path / "out" / "x.npz"
    out.parent.mkdir()
    assert prepare.main([str(src), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: cannot write {out}: No space left on device (free some space, or pick another --out)"
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("size, message", [
    ("0", "argument --size: 0: a side must be at least 8 pixels (leave --size out to keep the images' own size)"),
    ("-3", "argument --size: -3: a side must be at least 8 pixels (leave --size out to keep the images' own size)"),
    ("x", "argument --size: a whole number of pixels, got 'x'"),
])
def test_bad_sizes_name_prepares_flag(tmp_path, capsys, size, message):
    """--size 0 used to mean "their own size" and --size -3 named train.py's --image-size."""
    with pytest.raises(SystemExit) as exit_:
        prepare.main([str(_imgs(tmp_path)), str(tmp_path / "o.npz"), "--size", size])
    assert exit_.value.code == 2 and capsys.readouterr().err.strip().endswith(message)


def test_a_size_past_the_memory_is_one_line(tmp_path, capsys, monkeypatch):
    """--size 100000 was a 1.12 TiB allocation's traceback: the memory check, naming --size (the
    free memory set to 16 GiB: the same on any machine)."""
    from fastgan import images

    monkeypatch.setattr(images, "host_free_bytes", lambda: 16 << 30)
    assert prepare.main([str(_imgs(tmp_path)), str(tmp_path / "o.npz"), "--size", "100000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: 5 images at 100000x100000 grey need about 46.6 GiB of memory and 16.0 GiB is free: lower --size"
    assert not (tmp_path / "o.npz").exists()
