"""Regenerate the README's pictures from a real run:

    python train.py --device cpu --iters 30000 --eval-every 5000 --out runs/docs   # ~4 min on 2 CPU cores
    python docs/make_pictures.py runs/docs

Writes docs/samples.png (64 samples at the run's best checkpoint), docs/walks.png (latent walks
at the same checkpoint) and docs/curves.png (the run's losses, Fréchet distance and class KL),
each through the same commands and functions a user has. With a prefix, another run's pictures
beside them (the README's Fashion-MNIST run):

    python train.py --dataset fashion-mnist --r1 1 --g-ema 0.999 --iters 30000 --eval-every 10000 --out runs/fashion
    python docs/make_pictures.py runs/fashion fashion-     # docs/fashion-samples.png, fashion-walks.png, ...

A conditional run's grid, one row per class (N samples: 100 for ten classes, ten of each):

    python train.py --recipe stable --lr 1e-3 --lr-decay none --r1 1 --r1-every 1 --g-ema 0.999 --conditional --hidden 512 --iters 50000 --eval-every 25000 --out runs/c512
    python docs/make_pictures.py runs/c512 conditional- 100
"""

import sys
from pathlib import Path

from fastgan import sample
from fastgan.metrics import read_records
from fastgan.plots import save_losses

DOCS = Path(__file__).resolve().parent


def main(run, prefix="", n="64"):
    for argv in ([run, "--n", n, "--out", DOCS / f"{prefix}samples.png"],
                 [run, "--interpolate", "5", "--out", DOCS / f"{prefix}walks.png"]):
        if sample.main([str(a) for a in argv] + ["--force", "--device", "cpu"]) != 0:
            return 2
    save_losses(read_records(Path(run) / "metrics.jsonl"), DOCS / f"{prefix}curves.png")
    print(f"wrote {DOCS / f'{prefix}curves.png'}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3, 4):
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
