"""Train the seed's vanilla GAN from a clone: `python train.py --help` (the same as `fastgan train`)."""

import sys

from fastgan.train_cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python train.py"))
