"""python -m fastgan.prepare: a folder (or .npz) to the .npz fastgan trains on."""

import numpy as np
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
