"""Draw samples from a trained generator.

    fastgan sample RUN_OR_CHECKPOINT                 # 64 samples as an 8x8 grid PNG
    fastgan sample runs/try --n 100 --seed 3 --npz   # also the raw (n, 28, 28) uint8 array
    fastgan sample runs/try --interpolate 6          # 6 rows of linear walks through z-space

A run folder means its checkpoints/best.pt (the lowest Fréchet distance measured), else its
newest checkpoint. The PNG (and .npz) go beside the checkpoint unless --out says where; an
existing file is never overwritten without --force. Plain PyTorch on CUDA if present, else the
CPU; no Triton needed.
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from .atomic import save_npz
from .backends import pick_device
from .cli import Help, command
from .errors import FastganError
from .generator import load, noise
from .model import Z_DIM
from .plots import save_grid

STEPS = 10  # images per interpolation row, both end points included
MAX_N = 10_000  # images in one grid (100 x 100 tiles, 2,800 px square)


def walks(rows, seed, steps=STEPS):
    """rows linear walks of `steps` points, each between two random points of z-space: (rows * steps, Z)."""
    ends = noise(2 * rows, seed).view(rows, 2, Z_DIM)
    t = torch.linspace(0, 1, steps).view(1, steps, 1)
    return (ends[:, :1] * (1 - t) + ends[:, 1:] * t).reshape(rows * steps, Z_DIM)


def default_out(ckpt, interpolate):
    return ckpt.with_name(f"{ckpt.stem}-{'walks' if interpolate else 'samples'}.png")


def _free(path, force):
    if path.exists() and not force:
        raise FastganError(f"{path} exists; pass --force to overwrite it, or --out another file")


def _labels(G, label, n, cols):
    """The class numbers to draw n samples of: --label's (a number or a name), else one class per
    grid row of `cols`, in turn (as the training grids); None for an unconditional model (which
    refuses --label in one line)."""
    if not G.classes:
        if label is not None:
            raise FastganError(f"--label {label}: {G.path} is not a conditional model (trained without --conditional)")
        return None
    if label is None:
        return torch.arange(n) // cols % len(G.classes)
    if label in G.classes:
        return torch.full((n,), G.classes.index(label))
    if label.isdigit() and int(label) < len(G.classes):
        return torch.full((n,), int(label))
    raise FastganError(f"--label {label} is not a class of {G.path}: give a number 0..{len(G.classes) - 1} or a name "
                       f"({', '.join(G.classes)})")


def main(argv=None):
    p = argparse.ArgumentParser(prog=command("sample"), description=__doc__.split("\n\n")[0],
                                formatter_class=Help)
    p.add_argument("checkpoint", help="a checkpoint file, or a run folder (its best.pt, else its newest checkpoint)")
    p.add_argument("--n", type=int, default=64, help="samples, drawn as a square grid")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise")
    p.add_argument("--interpolate", type=int, default=0, metavar="K",
                   help=f"instead: K rows of {STEPS} images walking linearly between two random points of z-space")
    p.add_argument("--out", help="the PNG to write (default: beside the checkpoint)")
    p.add_argument("--npz", action="store_true",
                   help="also save the images as a uint8 array (.npz): (n, S, S) grey or (n, S, S, 3) RGB")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--raw", action="store_true", help="draw with G's trained weights, not its EMA (runs with --g-ema or --g-ema-rel)")
    p.add_argument("--label", help="a conditional model's class, by number or name (default: one class per row, in turn)")
    args = p.parse_args(argv)
    try:
        if not 1 <= args.n <= MAX_N:
            raise FastganError(f"--n must be in 1..{MAX_N:,} (one PNG grid of them), got {args.n:,}")
        if not 0 <= args.interpolate <= MAX_N // STEPS:
            raise FastganError(f"--interpolate must be in 0..{MAX_N // STEPS:,} rows, got {args.interpolate:,}")
        if not 0 <= args.seed < 2**63:
            raise FastganError(f"--seed must be in 0..2**63 - 1, got {args.seed}")
        if args.out and Path(args.out).suffix.lower() != ".png":
            raise FastganError(f"--out {args.out}: the grid is written as a PNG; give a name ending in .png")
        G = load(args.checkpoint, pick_device(args.device, log=lambda m: None), raw=args.raw)
        out = Path(args.out) if args.out else default_out(G.path, args.interpolate)
        npz = out.with_suffix(".npz")
        _free(out, args.force)
        if args.npz:
            _free(npz, args.force)
        if args.interpolate:
            z, rows, cols = walks(args.interpolate, args.seed), args.interpolate, STEPS
        else:
            cols = math.ceil(math.sqrt(args.n))
            z, rows = noise(args.n, args.seed), math.ceil(args.n / cols)
        with torch.no_grad():
            images = G(z.to(G.G_W1.device), _labels(G, args.label, len(z), cols)).reshape(len(z), -1).cpu().numpy()
        save_grid(images, out, rows, cols, image=G.image)  # whole or not at all (fastgan.atomic)
        if args.npz:  # (n, S, S) grey or (n, S, S, 3) RGB, as fastgan.prepare writes
            c, s, _ = G.image
            pixels = np.round(images.reshape(-1, c, s, s).transpose(0, 2, 3, 1) * 255).astype(np.uint8)
            save_npz(npz, {"images": pixels[..., 0] if c == 1 else pixels})
    except FastganError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    what = f"{args.interpolate} walks of {STEPS}" if args.interpolate else f"{args.n} samples"
    print(f"{what} from {G.path} (iteration {G.iteration}) -> {out}" + (f" and {npz}" if args.npz else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
