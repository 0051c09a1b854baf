"""The seed's 4x4 sample grid and its loss curves, drawn with matplotlib's object API
(no pyplot state), so they can be written from a background thread."""

import contextlib
import os
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib import image as mimage  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

LOSS_KEYS = ("d_loss", "d_real_loss", "d_fake_loss", "g_loss")


def _save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    FigureCanvasAgg(fig)
    fig.savefig(tmp, format="png", bbox_inches="tight")
    os.replace(tmp, path)


def grid_image(samples, rows=4, cols=4, gap=2, scale=3):
    """rows x cols 28x28 tiles in [0, 1] on white gaps as one grey image, upscaled; the seed's
    grid is 4 x 4. Tiles fill row by row; missing ones stay white."""
    img = np.ones((rows * 28 + (rows - 1) * gap, cols * 28 + (cols - 1) * gap), dtype=np.float32)
    for i, sample in enumerate(samples[: rows * cols]):
        r, c = divmod(i, cols)
        img[r * (28 + gap) : r * (28 + gap) + 28, c * (28 + gap) : c * (28 + gap) + 28] = sample.reshape(28, 28)
    return np.kron(img, np.ones((scale, scale), dtype=np.float32))


def save_grid(samples, path, rows=4, cols=4):
    """samples: (n, 784) array in [0, 1] -> a grey rows x cols grid (the seed's 4x4) as a PNG.

    Drawn as one image with matplotlib's imsave (a few ms) instead of 16 subplots (~250 ms), so
    a grid every 1000 iterations keeps up with training that runs well over 1000 it/s."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        mimage.imsave(tmp, grid_image(np.clip(samples, 0.0, 1.0), rows, cols), cmap="Greys_r", vmin=0.0, vmax=1.0,
                      format="png")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # a read-only folder: the write's own error is the one to report
            tmp.unlink(missing_ok=True)


def save_losses(metrics, path):
    """The seed's four loss curves against iteration; beside them, when the run measured its
    samples, the Fréchet distance (with its train-vs-test floor) and the class KL."""
    losses = [m for m in metrics if "d_loss" in m]
    evals = [m for m in metrics if "fd" in m]
    fig = Figure(figsize=(14 if evals else 8, 4.5))
    ax = fig.add_subplot(1, 2 if evals else 1, 1)
    its = [m["iter"] for m in losses]
    for key in LOSS_KEYS:
        ax.plot(its, [m[key] for m in losses], label=key, linewidth=0.8)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    if evals:
        ax = fig.add_subplot(1, 2, 2)
        its = [m["iter"] for m in evals]
        ax.plot(its, [m["fd"] for m in evals], marker="o", label="Fréchet distance")
        ax.plot(its, [m["fd_floor"] for m in evals], linestyle="--", color="grey", label="train-vs-test floor")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("Fréchet distance (classifier fc1 features)")
        ax.grid(alpha=0.3, which="both")
        kl = ax.twinx()
        kl.plot(its, [m["class_kl"] for m in evals], marker="s", color="tab:red", label="class KL to uniform")
        kl.set_ylabel("class KL (2.30 = one digit)")
        lines = ax.get_legend_handles_labels()
        more = kl.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8)
    _save(fig, path)
