"""Training as an animation: a run's fixed-noise sample grids in iteration order.

    fastgan animate RUN                      # RUN/progress.gif
    fastgan animate RUN --every 10 --fps 15  # every 10th grid
    fastgan animate RUN --out progress.mp4   # MP4 where matplotlib finds ffmpeg

Every grid of a run is drawn from the same noise batch, so the frames show the same 16 latent
points learning to be digits. Each frame is labelled with its iteration. Written with
matplotlib's animation writers (Pillow for GIF, ffmpeg for MP4): no new dependency. An
existing file is never overwritten without --force.
"""

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import animation  # noqa: E402
from matplotlib import image as mimage  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .atomic import replacing  # noqa: E402
from .cli import Help, command  # noqa: E402
from .errors import FastganError  # noqa: E402


def frames(run, every=1):
    """(iteration, path) of the run's sample grids, oldest first, every `every`-th and the last."""
    folder = Path(run) / "samples"
    grids = sorted((int(p.stem), p) for p in folder.glob("*.png") if p.stem.isdigit()) if folder.is_dir() else []
    if not grids:
        raise FastganError(f"no sample grids in {folder}; give a run folder that has trained (its samples/*.png)")
    kept = grids[::every]
    if kept[-1] != grids[-1]:
        kept.append(grids[-1])
    return kept


def _read(path):
    try:
        return mimage.imread(path)
    except Exception as e:  # Pillow's and matplotlib's errors for a truncated or foreign file vary
        raise FastganError(f"{path} is not a readable PNG ({type(e).__name__}: {e}); delete it and run again") from None


def write_animation(grids, out, fps):
    """Draw the frames (labelled with their iteration) and write them to `out` (.gif or .mp4)."""
    first = _read(grids[0][1])
    h, w = first.shape[:2]
    fig = Figure(figsize=(w / 100, (h + 30) / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0, 0, 1, h / (h + 30)])
    ax.set_axis_off()
    shown = ax.imshow(first, cmap="Greys_r", vmin=0, vmax=1)
    label = fig.text(0.5, 1 - 15 / (h + 30), "", ha="center", va="center", fontsize=10)

    def draw(i):
        it, path = grids[i]
        shown.set_data(_read(path))
        label.set_text(f"iteration {it:,}")
        return shown, label

    anim = animation.FuncAnimation(fig, draw, frames=len(grids), blit=False)
    if out.suffix == ".mp4":
        if not animation.writers.is_available("ffmpeg"):
            raise FastganError("writing .mp4 needs ffmpeg, which matplotlib cannot find; write a .gif instead")
        writer = animation.FFMpegWriter(fps=fps)
    else:
        writer = animation.PillowWriter(fps=fps)
    with replacing(out, suffix=out.suffix) as tmp:  # the writer picks its format by the suffix
        anim.save(tmp, writer=writer)


def main(argv=None):
    p = argparse.ArgumentParser(prog=command("animate"), description=__doc__.split("\n\n")[0],
                                formatter_class=Help)
    p.add_argument("run", help="a run folder (its samples/*.png are the frames)")
    p.add_argument("--out", help="the .gif or .mp4 to write (default: RUN/progress.gif)")
    p.add_argument("--every", type=int, default=1, help="keep every N-th grid (the last one always)")
    p.add_argument("--fps", type=float, default=10.0, help="frames per second")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    args = p.parse_args(argv)
    try:
        if args.every < 1:
            raise FastganError(f"--every must be at least 1, got {args.every}")
        if not args.fps > 0:
            raise FastganError(f"--fps must be positive, got {args.fps}")
        out = Path(args.out) if args.out else Path(args.run) / "progress.gif"
        if out.suffix not in (".gif", ".mp4"):
            raise FastganError(f"--out {out}: write a .gif or an .mp4")
        if out.exists() and not args.force:
            raise FastganError(f"{out} exists; pass --force to overwrite it, or --out another file")
        grids = frames(args.run, args.every)
        write_animation(grids, out, args.fps)
    except FastganError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(grids)} frames (iterations {grids[0][0]:,}..{grids[-1][0]:,}) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
