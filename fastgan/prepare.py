"""Convert a folder of images (or an .npz) into the array fastgan trains on, explicitly (like
stylegan's dataset_tool); `--dataset FOLDER` does the same conversion itself and caches it.

    fastgan prepare photos/ photos-32.npz --size 32 --channels 3
    fastgan train --dataset photos-32.npz

Writes OUT.npz with `images`, uint8 (n, S, S) or (n, S, S, 3), and `labels` if the source had
them, and reports what it read and skipped. Grey images become RGB only here (--channels 3).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from .atomic import save_npz
from .cli import Help, command
from .errors import FastganError
from .images import load_custom


def main(argv=None):
    p = argparse.ArgumentParser(prog=command("prepare"), description=__doc__.split("\n\n")[0],
                                formatter_class=Help)
    p.add_argument("src", help="a folder of images (searched recursively) or an .npz with `images`")
    p.add_argument("out", help="the .npz to write")
    p.add_argument("--size", type=int, help="square side in pixels (default: the images' own if square, else 28)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="1 grey, 3 RGB (default: the images' own)")
    p.add_argument("--force", action="store_true", help="overwrite OUT")
    args = p.parse_args(argv)
    out = Path(args.out)
    try:
        if out.suffix != ".npz":
            raise FastganError(f"{out}: the output must be an .npz")
        if out.exists() and not args.force:
            raise FastganError(f"{out} exists; pass --force to overwrite it")
        arrays = load_custom(args.src, args.size, args.channels, data_dir=None, convert_channels=True,
                             log=lambda m: print(m, file=sys.stderr))
    except FastganError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    images = arrays["train_images"]  # (n, C, S, S)
    saved = {"images": images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)}
    if "train_labels" in arrays:
        saved["labels"] = arrays["train_labels"]
    try:
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
