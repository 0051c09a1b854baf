"""Convert a folder of images (or an .npz) into the array fastgan trains on, explicitly (like
stylegan's dataset_tool); `--dataset FOLDER` does the same conversion itself and caches it.

    fastgan prepare photos/ photos-32.npz --size 32 --channels 3
    fastgan train --dataset photos-32.npz

Writes OUT.npz with `images`, uint8 (n, S, S) or (n, S, S, 3), and `labels` if the source had
them, and reports what it read and skipped. Grey images become RGB only here (--channels 3).
The output is checked first (an .npz name, not there unless --force, in an existing folder that
can be written), and the conversion's memory before any image is converted; OUT is written
whole or not at all.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from .atomic import probe_writable, save_npz
from .cli import Help, command
from .errors import FastganError
from .images import MIN_SIZE, load_custom


def _side(text):
    """--size: a whole number of pixels, at least MIN_SIZE (leaving it out keeps the images' own)."""
    try:
        side = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number of pixels, got {text!r}") from None
    if side < MIN_SIZE:
        raise argparse.ArgumentTypeError(f"{side}: a side must be at least {MIN_SIZE} pixels (leave --size out to "
                                         "keep the images' own size)")
    return side


def _check_out(out, force):
    """FastganError unless `out` can take the result: checked before converting anything."""
    if out.suffix != ".npz":
        raise FastganError(f"{out}: the output must be an .npz")
    if out.is_dir():
        raise FastganError(f"{out} is a folder; give the .npz file to write")
    if out.exists() and not force:
        raise FastganError(f"{out} exists; pass --force to overwrite it")
    folder = out.parent
    if not folder.is_dir():
        raise FastganError(f"{folder} is not a folder; create it first, or write OUT somewhere else")
    probe_writable(folder, "write to")


def main(argv=None):
    p = argparse.ArgumentParser(prog=command("prepare"), description=__doc__.split("\n\n")[0],
                                formatter_class=Help)
    p.add_argument("src", help="a folder of images (searched recursively) or an .npz with `images`")
    p.add_argument("out", help="the .npz to write")
    p.add_argument("--size", type=_side, help="square side in pixels (default: the images' own if square, else 28)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="1 grey, 3 RGB (default: the images' own)")
    p.add_argument("--force", action="store_true", help="overwrite OUT")
    args = p.parse_args(argv)
    out = Path(args.out)
    try:
        _check_out(out, args.force)
        arrays = load_custom(args.src, args.size, args.channels, data_dir=None, convert_channels=True,
                             log=lambda m: print(m, file=sys.stderr), size_flag="--size")
        images = arrays["train_images"]  # (n, C, S, S)
        saved = {"images": images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)}
        if "train_labels" in arrays:
            saved["labels"] = arrays["train_labels"]
        save_npz(out, saved)
    except FastganError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n, c, s, _ = images.shape
    print(f"wrote {out}: {n:,} images, {s}x{s}, {'RGB' if c == 3 else 'grey'}"
          + (f", {len(np.unique(saved['labels']))} labels" if "labels" in saved else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
