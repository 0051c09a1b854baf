"""The seed's 4x4 sample grid and its loss curves, drawn with matplotlib's object API
(no pyplot state), so they can be written from a background thread."""


import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib import image as mimage  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .atomic import replacing  # noqa: E402

LOSS_KEYS = ("d_loss", "d_real_loss", "d_fake_loss", "g_loss")


def _save(fig, path):
    FigureCanvasAgg(fig)
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")


def grid_image(samples, rows=4, cols=4, gap=2, scale=3, image=(1, 28, 28)):
    """rows x cols tiles of C x S x S images (flat, channels first) in [0, 1] on white gaps as one
    image, upscaled: grey (H, W) for C = 1, RGB (H, W, 3) for C = 3; the seed's grid is 4 x 4 of
    28 x 28 grey. Tiles fill row by row; missing ones stay white."""
    c, s, _ = image
    img = np.ones((rows * s + (rows - 1) * gap, cols * s + (cols - 1) * gap, c), dtype=np.float32)
    for i, sample in enumerate(samples[: rows * cols]):
        r, col = divmod(i, cols)
        img[r * (s + gap) : r * (s + gap) + s, col * (s + gap) : col * (s + gap) + s] = \
            sample.reshape(c, s, s).transpose(1, 2, 0)
    img = np.kron(img, np.ones((scale, scale, 1), dtype=np.float32))
    return img[..., 0] if c == 1 else img


def save_grid(samples, path, rows=4, cols=4, image=(1, 28, 28)):
    """samples: (n, X) array in [0, 1] of C x S x S images -> a rows x cols grid (the seed's 4x4),
    grey or RGB, as a PNG.

    Drawn as one image with matplotlib's imsave (a few ms) instead of 16 subplots (~250 ms), so
    a grid every 1000 iterations keeps up with training that runs well over 1000 it/s."""
    with replacing(path) as tmp:
        mimage.imsave(tmp, grid_image(np.clip(samples, 0.0, 1.0), rows, cols, image=image), cmap="Greys_r", vmin=0.0,
                      vmax=1.0, format="png")


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
        labelled = all("class_kl" in m for m in evals)
        if all(m["fd_floor"] is not None for m in evals):
            ax.plot(its, [m["fd_floor"] for m in evals], linestyle="--", color="grey",
                    label="train-vs-test floor" if labelled else "floor: two halves of the training images")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("Fréchet distance (" + ("classifier fc1 features)" if labelled else "principal components)"))
        ax.grid(alpha=0.3, which="both")
        lines, more = ax.get_legend_handles_labels(), ([], [])
        if labelled:
            kl = ax.twinx()
            kl.plot(its, [m["class_kl"] for m in evals], marker="s", color="tab:red", label="class KL to uniform")
            kl.set_ylabel("class KL (2.30 = one digit)")
            more = kl.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8)
    _save(fig, path)
