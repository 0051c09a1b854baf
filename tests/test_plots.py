import numpy as np
from matplotlib import image as mimage

from fastgan.plots import grid_image, save_grid, save_losses


def test_grid_places_each_sample_in_reading_order():
    samples = np.stack([np.full(784, i / 20, dtype=np.float32) for i in range(16)])
    samples[5, 3] = 0.99  # one marked pixel: row 0, column 3 of tile 5
    img = grid_image(samples, gap=2, scale=1)
    assert img.shape == (118, 118)
    for i in range(16):
        r, c = divmod(i, 4)
        tile = img[r * 30 : r * 30 + 28, c * 30 : c * 30 + 28]
        assert np.count_nonzero(tile != np.float32(i / 20)) == (1 if i == 5 else 0)
    assert img[30, 30 + 3] == np.float32(0.99)
    assert (img[28:30, :] == 1).all() and (img[:, 28:30] == 1).all()  # white gaps


def test_save_grid_writes_a_png(tmp_path):
    samples = np.random.default_rng(0).random((16, 784), dtype=np.float32)
    save_grid(samples, tmp_path / "g" / "0001000.png")
    png = mimage.imread(tmp_path / "g" / "0001000.png")
    assert png.shape[:2] == (354, 354)
    assert not list(tmp_path.rglob("*.tmp"))


def test_losses_plot_with_and_without_measurements(tmp_path):
    losses = [{"iter": i, "d_loss": 1.0, "d_real_loss": 0.5, "d_fake_loss": 0.5, "g_loss": 2.0 + i} for i in range(1, 4)]
    save_losses(losses, tmp_path / "a.png")
    evals = [{"iter": 2, "fd": 50.0, "fd_floor": 2.3, "class_kl": 0.1}]
    save_losses(losses + evals, tmp_path / "b.png")
    assert mimage.imread(tmp_path / "b.png").shape[1] > mimage.imread(tmp_path / "a.png").shape[1]
