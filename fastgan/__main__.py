"""The `fastgan` command (and `python -m fastgan`): `fastgan SUBCOMMAND --help` for each one's flags."""

import importlib
import sys

from .cli import set_prog

# subcommand -> (module, what it does); each module's main(argv) parses its own flags.
SUBCOMMANDS = {
    "train": ("fastgan.train_cli", "train a GAN, a sweep of them, or resume one (a run folder per run)"),
    "sample": ("fastgan.sample", "draw samples or walks through z-space from a checkpoint as a PNG"),
    "animate": ("fastgan.animate", "a run's sample grids as a GIF or MP4"),
    "evaluate": ("fastgan.evaluate", "Fréchet distance, classifier score and class histogram of a checkpoint"),
    "prepare": ("fastgan.prepare", "convert a folder of images (or an .npz) into a training .npz"),
}


def usage(prog):
    width = max(map(len, SUBCOMMANDS))
    lines = [f"usage: {prog} SUBCOMMAND [FLAGS]   ({prog} SUBCOMMAND --help: its flags)", "",
             "The 2014 GAN (Goodfellow et al.) on MNIST or your own images, with fused Triton kernels.", "",
             "subcommands:"]
    lines += [f"  {name:<{width}}  {what}" for name, (_, what) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv=None, prog="fastgan"):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(prog))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"error: unknown subcommand {name!r}; choose one of: {', '.join(SUBCOMMANDS)} ({prog} --help)",
              file=sys.stderr)
        return 2
    set_prog(prog)
    return importlib.import_module(SUBCOMMANDS[name][0]).main(rest)


if __name__ == "__main__":
    sys.exit(main(prog="python -m fastgan"))
