"""What the command lines share: the name the user ran fastgan by (for messages that say what to
run next) and help that gives each flag's default once."""

import argparse
import os

# How this process was started: "fastgan" (the installed command), "python -m fastgan" or
# "python train.py" (a clone's entry); set once by the entry point, read by the messages.
_prog = "fastgan"


def set_prog(prog):
    global _prog
    _prog = prog


def command(sub="train"):
    """The command line that runs fastgan's `sub` the way this process was started: `fastgan
    train`, `python -m fastgan sample`, or `python train.py` for training from a clone."""
    if _prog == "python train.py":
        return "python train.py" if sub == "train" else f"python -m fastgan {sub}"
    return f"{_prog} {sub}"


def reproducible_products():
    """Put MKL in its strict reproducible mode, unless the environment says otherwise: its products
    then give the same bits on any number of threads, so a CPU sweep's runs can spread over the
    cores and still equal each run alone (fastgan.cpu_workers). Call it before torch's first
    product (MKL reads the variable then); this module imports neither torch nor numpy."""
    os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default after its help, except a flag without one (its help says what then)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)
